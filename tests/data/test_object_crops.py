import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.data.coco import DatasetError
from visdet.data.object_crops import ObjectCropDataset, crop_box, shapes_crops
from visdet.data.shapes import CLASSES

H, W = 40, 50
RED = (255, 0, 0)


def ann(i, cat, bbox, image_id=1, crowd=0):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": crowd}


ANNS = [
    ann(1, 7, [10, 20, 20, 10]),  # the red rectangle: x 10..30, y 20..30
    ann(2, 3, [0, 0, 30, 30], crowd=1),  # crowd: skipped
    ann(3, 3, [5, 5, 1.5, 10]),  # narrower than 2 px: skipped
    ann(4, 10, [40, 2, 8, 6]),  # near the top-right corner
    ann(5, 3, [3.5, 4.2, 10, 5]),  # fractional
    ann(6, 10, [45, 35, 10, 10]),  # partly outside: clipped to (45, 35, 50, 40)
    ann(7, 7, [60, 5, 5, 5]),  # entirely outside: nothing left, skipped
]


@pytest.fixture
def pixels():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    array[20:30, 10:30] = RED
    return array


def write(root, pixels, anns=ANNS, categories=None):
    (root / "img").mkdir(exist_ok=True)
    Image.fromarray(pixels).save(root / "img" / "a.png")
    categories = categories or [{"id": 10, "name": "fox"}, {"id": 3, "name": "cat"}]
    categories = categories + [{"id": 7, "name": "dog"}]
    images = [{"id": 1, "file_name": "a.png", "width": W, "height": H}]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return path


def test_records_labels_and_skips(tmp_path, pixels, caplog):
    path = write(tmp_path, pixels)
    with caplog.at_level(logging.WARNING):
        ds = ObjectCropDataset(path, tmp_path / "img", image_size=(16, 16), context=0)
    assert "skipped 2 boxes" in caplog.text
    assert ds.classes == ["cat", "dog", "fox"] and ds.num_classes == 3  # sorted by id 3, 7, 10
    assert [(r.ann_id, r.label) for r in ds.records] == [(1, 1), (4, 2), (5, 0), (6, 2)]
    assert ds.records[3].box == (45, 35, 50, 40)
    assert all(r.path == tmp_path / "img" / "a.png" for r in ds.records)
    assert len(ds) == 4
    for i, r in enumerate(ds.records):
        image, label = ds[i]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1
        assert label.dtype == torch.int64 and label.ndim == 0 and label.item() == r.label
    red = torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, 16, 16)
    assert torch.allclose(ds[0][0], red)  # the rectangle alone, resized


# context -> the expected crop (x1, y1, x2, y2) of annotations 1, 4, 5, 6, worked out by hand
EXPECTED = {
    0.0: [(10, 20, 30, 30), (40, 2, 48, 8), (3, 4, 14, 10), (45, 35, 50, 40)],
    # ann 1: dx 5, dy 2.5 -> floor/ceil; ann 4: dx 4, dy 3 -> y1 -1 and x2 52 clipped
    0.25: [(5, 17, 35, 33), (38, 0, 50, 10), (1, 2, 16, 11), (43, 33, 50, 40)],
    0.5: [(0, 15, 40, 35), (36, 0, 50, 11), (0, 1, 19, 12), (42, 32, 50, 40)],
}


@pytest.mark.parametrize("context", sorted(EXPECTED))
def test_crop_pixels_at_native_size(tmp_path, pixels, context):
    path = write(tmp_path, pixels)
    boxes = EXPECTED[context]
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        ds = ObjectCropDataset(
            path, tmp_path / "img", image_size=(y2 - y1, x2 - x1), context=context
        )
        assert crop_box(ds.records[index].box, context, W, H) == (x1, y1, x2, y2)
        expected = torch.from_numpy(pixels[y1:y2, x1:x2].copy()).permute(2, 0, 1).float() / 255
        assert torch.equal(ds[index][0], expected)


def test_min_box_size(tmp_path, pixels):
    path = write(tmp_path, pixels)
    ds = ObjectCropDataset(path, tmp_path / "img", min_box_size=5.5)  # ann 5 is 5 high, ann 6 5x5
    assert [r.ann_id for r in ds.records] == [1, 4]
    ds = ObjectCropDataset(path, tmp_path / "img", min_box_size=0)
    assert [r.ann_id for r in ds.records] == [1, 3, 4, 5, 6]


def test_bad_annotation_files(tmp_path, pixels):
    path = write(tmp_path, pixels)
    img = tmp_path / "img"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        ObjectCropDataset(tmp_path / "nope.json", img)
    with pytest.raises(FileNotFoundError, match="no_images"):
        ObjectCropDataset(path, tmp_path / "no_images")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json is not valid JSON"):
        ObjectCropDataset(tmp_path / "bad.json", img)
    write(tmp_path, pixels, anns=[ann(1, 42, [1, 1, 5, 5])])
    with pytest.raises(DatasetError, match="category_id 42"):
        ObjectCropDataset(path, img)
    with pytest.raises(ValueError, match="context"):
        ObjectCropDataset(path, img, context=-0.1)
    with pytest.raises(ValueError, match="min_box_size"):
        ObjectCropDataset(path, img, min_box_size=-1)


def test_missing_and_unreadable_images(tmp_path, pixels):
    path = write(tmp_path, pixels, anns=[ann(1, 7, [1, 1, 5, 5])])
    img = tmp_path / "img"
    (img / "a.png").write_bytes(b"not a png")
    ds = ObjectCropDataset(path, img)
    with pytest.raises(ValueError, match=r"cannot read image .*a\.png"):
        ds[0]
    (img / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match="a.png"):
        ObjectCropDataset(path, img)
    # the file is smaller than the annotation file says: the box lies outside it
    path = write(tmp_path, pixels, anns=[ann(1, 7, [45, 35, 4, 4])])
    Image.fromarray(pixels[:10, :10]).save(img / "a.png")
    with pytest.raises(ValueError, match="lies outside"):
        ObjectCropDataset(path, img)[0]


def test_shapes_crops(tmp_path):
    options = {"num_train": 4, "num_val": 2, "min_object_size": 10, "max_object_size": 30}
    ds = shapes_crops("val", (24, 20), data_dir=tmp_path, shapes_image_size=48, **options)
    assert ds.classes == list(CLASSES)
    (root,) = tmp_path.glob("shapes_*")
    data = json.loads((root / "instances_val.json").read_text())
    assert len(ds) == len(data["annotations"]) > 0
    image, label = ds[0]
    assert image.shape == (3, 24, 20) and 0 <= label.item() < len(CLASSES)
    with pytest.raises(ValueError, match="split"):
        shapes_crops("test", data_dir=tmp_path)
