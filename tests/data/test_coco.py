import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.data import CocoDetection, collate_detection


def write_dataset(root, annotations, categories=None, images=None):
    (root / "img").mkdir(parents=True, exist_ok=True)
    images = images or [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
    ]
    for im in images:
        Image.fromarray(np.full((im["height"], im["width"], 3), 128, np.uint8)).save(
            root / "img" / im["file_name"]
        )
    categories = categories or [
        {"id": 3, "name": "cat"},
        {"id": 7, "name": "dog"},
        {"id": 10, "name": "fox"},
    ]
    path = root / "ann.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path


def ann(i, image_id, cat, bbox, crowd=0):
    return {
        "id": i,
        "image_id": image_id,
        "category_id": cat,
        "bbox": bbox,
        "iscrowd": crowd,
        "area": bbox[2] * bbox[3],
    }


def test_targets_crowd_degenerate_and_label_mapping(tmp_path, caplog):
    path = write_dataset(
        tmp_path,
        [
            ann(1, 1, 7, [1, 2, 10, 5]),
            ann(2, 1, 10, [5, 5, 4, 4], crowd=1),
            ann(3, 1, 3, [10, 10, 0, 5]),
            ann(4, 1, 10, [39, 29, 5, 5]),
            ann(5, 1, 10, [50, 5, 5, 5]),  # entirely outside: degenerate after clipping
        ],
    )
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(path, tmp_path / "img")
    assert "dropped 2 degenerate boxes" in caplog.text
    assert ds.cat_id_to_label == {3: 1, 7: 2, 10: 3}
    image, target = ds[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert torch.allclose(image, torch.full_like(image, 128 / 255))
    assert target["boxes"].tolist() == [[1, 2, 11, 7], [39, 29, 40, 30]]  # clipped to the image
    assert target["labels"].tolist() == [2, 3]
    assert target["image_id"] == 1 and target["orig_size"] == (30, 40)
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_bad_files_are_named(tmp_path):
    path = write_dataset(tmp_path, [ann(1, 1, 3, [1, 1, 5, 5])])
    with pytest.raises(FileNotFoundError, match="nope.json"):
        CocoDetection(tmp_path / "nope.json", tmp_path / "img")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        CocoDetection(tmp_path / "bad.json", tmp_path / "img")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not COCO JSON"):
        CocoDetection(tmp_path / "list.json", tmp_path / "img")
    path = write_dataset(tmp_path, [ann(9, 1, 42, [1, 1, 5, 5])])
    with pytest.raises(ValueError, match="annotation 9 has category_id 42"):
        CocoDetection(path, tmp_path / "img")
    path = write_dataset(tmp_path, [ann(1, 1, 3, [1, 1, 5, 5])])
    (tmp_path / "img" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="b.png"):
        CocoDetection(path, tmp_path / "img")
    with pytest.raises(FileNotFoundError, match="image folder"):
        CocoDetection(path, tmp_path / "missing_dir")


def test_unreadable_image_is_skipped_and_counted(tmp_path, caplog):
    path = write_dataset(tmp_path, [ann(1, 1, 3, [1, 1, 5, 5])])
    (tmp_path / "img" / "b.png").write_bytes(b"garbage")
    ds = CocoDetection(path, tmp_path / "img")
    with caplog.at_level(logging.WARNING):
        assert ds[1] is None
    assert "b.png" in caplog.text
    batch = collate_detection([ds[0], ds[1]])
    assert len(batch["images"]) == 1 and batch["skipped"] == 1
    assert batch["targets"][0]["image_id"] == 1


def test_aspect_ratio_batches_are_homogeneous_and_cover_everything():
    from visdet.data.datamodule import AspectRatioBatchSampler

    ratios = [1.5, 0.5, 1.0, 0.7, 2.0, 0.9, 1.2]
    sampler = AspectRatioBatchSampler(ratios, batch_size=2, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(7))
    for b in batches:
        assert len({ratios[i] >= 1 for i in b}) == 1
    assert list(sampler) != batches or len(batches) == 1  # reshuffled the next epoch
