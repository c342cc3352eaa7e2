"""visdet.data.check: every problem kind counted in one pass, with its severity, against what
the generated set was built to contain (and a brute-force IoU loop for duplicated boxes)."""

from __future__ import annotations

import itertools
import random

import pytest
from PIL import Image

from visdet.data.check import SEVERITY, check_dataset, severity_counts
from visdet.data.coco_checks import DatasetError


def png(path, size=(64, 48)):
    Image.new("RGB", size, (90, 120, 150)).save(path)
    return path.name


def ann(ann_id, image_id, bbox, cat=1):
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": bbox}


def image(image_id, name, w=64, h=48):
    return {"id": image_id, "file_name": name, "width": w, "height": h}


def clean_set(tmp_path):
    png(tmp_path / "a.png")
    png(tmp_path / "b.png")
    return {
        "images": [image(1, "a.png"), image(2, "b.png")],
        "annotations": [ann(1, 1, [5, 5, 20, 20]), ann(2, 2, [0, 0, 64.9, 48.9], cat=2)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


def test_a_clean_set_has_no_problems(tmp_path):
    report = check_dataset(clean_set(tmp_path), tmp_path, "train", workers=2)
    assert report["problems"] == {}
    assert report["counts"]["images"] == 2 and report["counts"]["boxes"] == 2
    assert report["counts"]["per_class"] == {"cat": 1, "dog": 1}
    assert report["counts"]["box_sizes"] == {"small": 1, "medium": 1, "large": 0}
    assert sorted(report["distributions"]["image_sizes"]) == [[64, 48], [64, 48]]


def broken_set(tmp_path):
    png(tmp_path / "a.png")
    png(tmp_path / "small.png", (32, 32))  # annotation says 64x48
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    png(tmp_path / "empty.png")
    # stored 48x64 with EXIF orientation 6 (rotate 90): 64x48 as training sees it, no mismatch
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (48, 64)).save(tmp_path / "rotated.jpg", exif=exif)
    images = [
        image(1, "a.png"),
        image(2, "small.png"),
        image(3, "missing.png"),
        image(4, "broken.png"),
        image(5, "empty.png"),
        image(6, "rotated.jpg"),
        image(1, "other.png"),  # duplicate image id
        image(7, "a.png"),  # duplicate file name (and an image without labels)
        image(8, "../up.png"),  # bad file name
        {"id": 9, "file_name": "nosize.png"},  # invalid entry
    ]
    anns = [
        ann(1, 1, [5, 5, 20, 20]),
        ann(2, 1, [50, 5, 20, 10]),  # out of bounds (x2 = 70 > 64 + 1)
        ann(3, 1, [0, 0, 64.9, 48.9]),  # within 1 px: fine
        ann(4, 1, [5, 5, 0, 10]),  # degenerate
        ann(5, 1, [5, 5, 10, -1]),  # degenerate
        ann(6, 1, [5, 5, 10, 10], cat=7),  # unknown category
        ann(7, 1, [30, 30, 3, 10]),  # tiny
        ann(8, 1, [0, 40, 44, 4]),  # extreme aspect (11), not tiny
        ann(9, 6, [10, 10, 20, 20]),
        ann(10, 6, [10, 10, 20, 20.5]),  # duplicate of 9 (IoU 0.976)
        ann(11, 6, [10, 10, 20, 20], cat=2),  # same box, other class: not a duplicate
        ann(12, 555, [1, 1, 5, 5]),  # unknown image
        ann(13, 2, [1, 2, 3]),  # invalid bbox
        ann(13, 2, [1, 1, 10, 10]),  # duplicate annotation id
        {"id": 14, "image_id": 1},  # invalid entry
        ann(15, [1], [1, 1, 5, 5]),  # invalid entry: an image id that is a list
    ]
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "owl"}]
    return {"images": images, "annotations": anns, "categories": cats}


EXPECTED = {
    "invalid_entry": 5,  # nosize image, image 555, bbox [1, 2, 3], no bbox, image_id [1]
    "bad_file_name": 1,
    "missing_file": 1,
    "unreadable_image": 1,
    "size_mismatch": 1,
    "box_out_of_bounds": 1,
    "degenerate_box": 2,
    "unknown_category": 1,
    "duplicate_image_id": 1,
    "duplicate_file_name": 1,
    "duplicate_annotation_id": 1,
    "tiny_box": 1,
    "extreme_aspect_ratio": 1,
    "duplicate_box": 1,
    "empty_class": 1,  # owl
    "image_without_labels": 4,  # missing, broken, empty, id 7 (small has a box)
}


def test_every_problem_is_counted_with_its_severity(tmp_path):
    report = check_dataset(broken_set(tmp_path), tmp_path, "train", workers=3)
    problems = report["problems"]
    assert {k: p["count"] for k, p in problems.items()} == EXPECTED
    assert all(p["severity"] == SEVERITY[k] for k, p in problems.items())
    errors = [k for k, p in problems.items() if p["severity"] == "error"]
    assert errors == [k for k in problems][: len(errors)]  # errors listed first
    assert severity_counts(report) == {
        "error": sum(v for k, v in EXPECTED.items() if SEVERITY[k] == "error"),
        "warning": sum(v for k, v in EXPECTED.items() if SEVERITY[k] == "warning"),
    }
    assert problems["missing_file"]["examples"] == ["missing.png: file not found"]
    assert (
        "small.png: file is 32x32, annotation says 64x48" in problems["size_mismatch"]["examples"]
    )
    assert problems["unreadable_image"]["examples"][0].startswith("broken.png: ")
    counts = report["counts"]
    # usable boxes: 1, 2, 3, 7, 8, 9, 10 (cat) and 11 (dog), the second 13 (cat)
    assert counts["per_class"] == {"cat": 8, "dog": 1, "owl": 0}
    assert counts["boxes"] == 9 and counts["annotations"] == 16
    assert counts["images_without_labels"] == 4


def test_class_imbalance_is_a_warning_above_20(tmp_path):
    png(tmp_path / "a.png", (400, 400))
    grid = [[20 * (i % 20), 20 * (i // 20), 10, 10] for i in range(21)]
    coco = {
        "images": [image(1, "a.png", 400, 400)],
        "annotations": [ann(i, 1, b) for i, b in enumerate(grid)]
        + [ann(99, 1, [300, 300, 9, 9], 2)],
        "categories": [{"id": 1, "name": "many"}, {"id": 2, "name": "few"}],
    }
    report = check_dataset(coco, tmp_path, "val", workers=1)
    assert report["problems"]["class_imbalance"]["count"] == 1
    assert report["problems"]["class_imbalance"]["severity"] == "warning"
    coco["annotations"] = coco["annotations"][1:]  # 20 : 1 is not above 20
    assert "class_imbalance" not in check_dataset(coco, tmp_path, "val", 1)["problems"]


def brute_force_iou(a, b):
    ax1, ay1, aw, ah = a
    bx1, by1, bw, bh = b
    iw = max(0.0, min(ax1 + aw, bx1 + bw) - max(ax1, bx1))
    ih = max(0.0, min(ay1 + ah, by1 + bh) - max(ay1, by1))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def test_duplicated_boxes_match_a_brute_force_pair_loop(tmp_path):
    png(tmp_path / "a.png", (200, 200))
    png(tmp_path / "b.png", (200, 200))
    rng = random.Random(3)
    boxes = []
    for _ in range(40):
        x, y, w, h = (
            rng.uniform(0, 100),
            rng.uniform(0, 100),
            rng.uniform(10, 60),
            rng.uniform(10, 60),
        )
        boxes.append((rng.choice([1, 2]), rng.choice([1, 2]), [x, y, w, h]))
        if rng.random() < 0.4:  # a near copy, sometimes just above the threshold
            d = rng.uniform(0, 1.5)
            boxes.append((boxes[-1][0], boxes[-1][1], [x + d, y, w, h]))
    anns = [ann(i, im, b, cat) for i, (im, cat, b) in enumerate(boxes)]
    expected = sum(
        1
        for a, b in itertools.combinations(anns, 2)
        if (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        and brute_force_iou(a["bbox"], b["bbox"]) > 0.95
    )
    assert expected > 0
    coco = {
        "images": [image(1, "a.png", 200, 200), image(2, "b.png", 200, 200)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}],
    }
    got = check_dataset(coco, tmp_path, "train", 2)["problems"].get("duplicate_box", {})
    assert got.get("count", 0) == expected


def test_empty_dataset_and_bad_input(tmp_path):
    report = check_dataset({"images": [], "annotations": [], "categories": []}, tmp_path, "val")
    assert report["problems"] == {} and report["counts"]["images"] == 0
    with pytest.raises(DatasetError, match="split val: not COCO JSON"):
        check_dataset({"images": []}, tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        check_dataset(clean_set(tmp_path), tmp_path / "nope", "val")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        check_dataset(clean_set(tmp_path), tmp_path, "val", workers=0)
