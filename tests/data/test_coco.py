import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.data import CocoDetection, collate_detection
from visdet.data.coco import SkippedImage


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
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(path, tmp_path / "img")
    assert "1 images cannot be read and will be skipped" in caplog.text
    assert "b.png (cannot identify image file)" in caplog.text
    assert ds[1] == SkippedImage(str(tmp_path / "img" / "b.png"), "cannot identify image file")
    batch = collate_detection([ds[0], ds[1]])
    assert len(batch["images"]) == 1 and batch["skipped"] == 1
    assert batch["skipped_files"] == [(ds[1].path, ds[1].reason)]
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


def raw_file(tmp_path, images=None, annotations=(), categories=None):
    images = images or [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}]
    path = tmp_path / "raw.json"
    path.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": list(annotations),
                "categories": categories or [{"id": 3, "name": "cat"}],
            }
        )
    )
    return path


def test_duplicate_ids_are_errors_naming_them(tmp_path):
    from visdet.data.coco import DatasetError, load_coco

    images = [{"id": i, "file_name": f"{i}.png", "width": 4, "height": 4} for i in (5, 6, 5, 6)]
    with pytest.raises(DatasetError, match=r"duplicate image ids 5, 6 "):
        load_coco(raw_file(tmp_path, images=images))
    anns = [ann(i, 1, 3, [1, 1, 2, 2]) for i in (1, 2, 2, 9, 9)]
    with pytest.raises(DatasetError, match=r"raw.json: duplicate annotation ids 2, 9 "):
        load_coco(raw_file(tmp_path, annotations=anns))
    with pytest.raises(DatasetError, match=r"duplicate category ids 3"):
        load_coco(raw_file(tmp_path, categories=[{"id": 3}, {"id": 3}]))


@pytest.mark.parametrize(
    "bbox, message",
    [
        ([float("nan"), 1, 5, 5], r"bbox \[nan.*finite"),
        ([1, 1, float("inf"), 5], r"finite"),
        (["1", 1, 5, 5], r"must be numbers"),
        ([1, 1, 5], r"must be \[x, y, width, height\]"),
        ("1 1 5 5", r"must be \[x, y, width, height\]"),
        ([1, 1, 1e30, 5], r"far outside its 40x30 image"),
        ([-50, 1, 5, 5], r"far outside"),
    ],
)
def test_bad_boxes_are_errors_naming_file_and_annotation(tmp_path, bbox, message):
    from visdet.data.coco import DatasetError, load_coco

    path = raw_file(tmp_path, annotations=[{**ann(1, 1, 3, [1, 1, 2, 2]), "id": 7, "bbox": bbox}])
    with pytest.raises(DatasetError, match=r"raw.json: annotation 7 \(image 1\) .*" + message):
        load_coco(path)


@pytest.mark.parametrize("name", ["../a.png", "img/../../a.png", "/etc/passwd", "C:\\x.png", ""])
def test_file_names_escaping_the_image_folder_are_refused(tmp_path, name):
    from visdet.data.coco import DatasetError, load_coco

    images = [{"id": 1, "file_name": name, "width": 4, "height": 4}]
    with pytest.raises(DatasetError, match="raw.json: image 1 file_name"):
        load_coco(raw_file(tmp_path, images=images))


def perfect(ds, target_index):
    t = ds.targets[target_index]
    n = len(t["labels"])
    return {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(n)}


def test_ids_from_zero_and_above_2_31_and_ignore_like_crowd(tmp_path, caplog):
    from visdet.metrics.coco_map import CocoMeanAP

    big = 2**31 + 5
    images = [
        {"id": 0, "file_name": "a.png", "width": 40, "height": 30},
        {"id": big, "file_name": "b.png", "width": 40, "height": 30},
    ]
    anns = [
        {**ann(0, 0, 3, [1, 2, 10, 5]), "ignore": 0},
        {**ann(big + 1, big, 7, [5, 5, 20, 20])},
        {**ann(big + 2, big, 7, [20, 2, 10, 10]), "ignore": 1},  # not in targets, not missed
    ]
    path = write_dataset(tmp_path, anns, images=images)
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(path, tmp_path / "img")
    assert "'ignore: 1' treated as crowd (iscrowd 1) for 1 annotations" in caplog.text
    assert ds.image_ids == [0, big]
    assert [len(t["labels"]) for t in ds.targets] == [1, 1]
    assert ds[1][1]["image_id"] == big
    metric = CocoMeanAP(path)
    metric.update([perfect(ds, 0), perfect(ds, 1)], [0, big])
    assert metric.compute()["mAP"] == pytest.approx(1.0)


def test_missing_area_and_iscrowd_are_filled_and_evaluation_works(tmp_path, caplog):
    from visdet.metrics.coco_map import CocoMeanAP

    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 5]}]
    path = write_dataset(tmp_path, anns)
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(path, tmp_path / "img")
    assert "'area' computed from the box (width x height) for 1" in caplog.text
    assert "'iscrowd' set to 0 for 1" in caplog.text
    assert ds.coco.anns[1]["area"] == 50.0 and ds.coco.anns[1]["iscrowd"] == 0
    metric = CocoMeanAP(path)
    metric.update([perfect(ds, 0), perfect(ds, 1)], [1, 2])
    results = metric.compute()
    assert results["mAP"] == pytest.approx(1.0) and results["num_images"] == 2


def test_zero_area_and_sub_pixel_boxes_are_dropped_and_counted(tmp_path, caplog):
    anns = [
        ann(1, 1, 3, [1, 1, 10, 10]),
        {**ann(2, 1, 3, [1, 1, 10, 10]), "area": 0},  # zero area (MMDetection drops it too)
        ann(3, 1, 3, [1, 1, 1, 0.1]),  # sub-pixel
        ann(4, 1, 3, [1, 1, 0, 5]),  # zero width
        ann(5, 1, 3, [39.5, 1, 5, 5]),  # half a pixel inside the image
    ]
    with caplog.at_level(logging.WARNING):
        ds = CocoDetection(write_dataset(tmp_path, anns), tmp_path / "img")
    assert (
        "dropped 4 degenerate boxes (2 with zero area, 2 under 1 px wide or high, "
        "0 with no area inside the image)" in caplog.text
    )
    assert ds.targets[0]["boxes"].tolist() == [[1, 1, 11, 11]]
    assert ds.targets[1]["boxes"].shape == (0, 4)  # no annotations: stays as a negative
    assert len(ds) == 2


class Splits:
    def __init__(self, train, val, image_dir):
        from visdet.data.sources import Split

        self.paths = {"train": Split(train, image_dir), "val": Split(val, image_dir)}

    def prepare(self):
        pass

    def splits(self):
        return self.paths


def test_datamodule_checks_every_split_before_training(tmp_path):
    from visdet.data.coco import DatasetError
    from visdet.data.datamodule import DetectionDataModule

    train = write_dataset(tmp_path, [ann(1, 1, 3, [1, 1, 5, 5])], categories=[{"id": 3}])
    val = tmp_path / "val.json"
    bad = json.loads(train.read_text())
    bad["annotations"] = [ann(4, 1, 3, [1, 1, 5, 5]), ann(4, 2, 3, [1, 1, 5, 5])]
    val.write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="val.json: duplicate annotation ids 4"):
        DetectionDataModule(Splits(train, val, tmp_path / "img"), 1).setup("fit")
    bad["annotations"], bad["categories"] = [], [{"id": 4}]
    val.write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match=r"different category ids.*\[3\].*\[4\]"):
        DetectionDataModule(Splits(train, val, tmp_path / "img"), 1).setup("fit")
    empty = write_dataset(tmp_path, [ann(1, 1, 3, [1, 1, 0, 5])], categories=[{"id": 3}])
    with pytest.raises(DatasetError, match="the training split has no usable box"):
        DetectionDataModule(Splits(empty, empty, tmp_path / "img"), 1).setup("fit")
