"""YOLO layout -> COCO dict: boxes against the shapes COCO ground truth, every bad line."""

import json
import shutil
from pathlib import Path

import pytest

from visdet.data import DetectionDataModule, YoloSource
from visdet.data.coco_checks import DatasetError
from visdet.data.formats import read_yolo
from visdet.data.shapes import CLASSES, ShapesSettings, ensure_shapes_dataset

SETTINGS = ShapesSettings(
    num_train=6,
    num_val=3,
    image_size=64,
    min_object_size=12,
    max_object_size=40,
    empty_fraction=0.2,
)


def shapes_coco(tmp_path: Path) -> Path:
    return ensure_shapes_dataset(tmp_path / "shapes", SETTINGS)


def make_yolo(tmp_path: Path, names_as_dict: bool = False) -> tuple[Path, Path]:
    """The shapes dataset in the Ultralytics layout under ``tmp_path/yolo``: (data.yaml,
    shapes root). Images without boxes get no label file."""
    shapes = shapes_coco(tmp_path)
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        coco = json.loads((shapes / f"instances_{split}.json").read_text())
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        cat_index = {
            c["id"]: i for i, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))
        }
        for im in coco["images"]:
            shutil.copy(shapes / split / im["file_name"], root / "images" / split / im["file_name"])
            lines = []
            for a in coco["annotations"]:
                if a["image_id"] == im["id"]:
                    x, y, w, h = a["bbox"]
                    W, H = im["width"], im["height"]
                    lines.append(
                        f"{cat_index[a['category_id']]} {(x + w / 2) / W:.9f} "
                        f"{(y + h / 2) / H:.9f} {w / W:.9f} {h / H:.9f}"
                    )
            if lines:
                (root / "labels" / split / im["file_name"]).with_suffix(".txt").write_text(
                    "\n".join(lines) + "\n"
                )
    names = (
        ("{" + ", ".join(f"{i}: {n}" for i, n in enumerate(CLASSES)) + "}")
        if names_as_dict
        else "[" + ", ".join(CLASSES) + "]"
    )
    data_yaml = root / "data.yaml"
    data_yaml.write_text(f"path: .\ntrain: images/train\nval: images/val\nnames: {names}\n")
    return data_yaml, shapes


def boxes_by_file(coco: dict) -> dict[str, list]:
    """file_name -> sorted [(category name, x, y, w, h)]."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    out = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], *a["bbox"]))
    return {f: sorted(v) for f, v in out.items()}


@pytest.mark.parametrize("names_as_dict", [False, True])
def test_boxes_match_the_coco_ground_truth(tmp_path, names_as_dict):
    data_yaml, shapes = make_yolo(tmp_path, names_as_dict)
    for split in ("train", "val"):
        read = read_yolo(data_yaml, split)
        assert read.problems == []
        assert read.image_dir == data_yaml.parent / "images" / split
        want = json.loads((shapes / f"instances_{split}.json").read_text())
        assert [c["name"] for c in read.coco["categories"]] == list(CLASSES)
        assert [c["id"] for c in read.coco["categories"]] == list(range(1, len(CLASSES) + 1))
        assert [im["id"] for im in read.coco["images"]] == list(range(1, len(want["images"]) + 1))
        assert [a["id"] for a in read.coco["annotations"]] == list(
            range(1, len(want["annotations"]) + 1)
        )
        got, ref = boxes_by_file(read.coco), boxes_by_file(want)
        assert got.keys() == ref.keys()  # negatives (no label file) are kept
        assert any(not v for v in ref.values())
        for f in ref:
            assert [b[0] for b in got[f]] == [b[0] for b in ref[f]]
            for g, r in zip(got[f], ref[f], strict=True):
                assert g[1:] == pytest.approx(r[1:], abs=1e-4)
        for a in read.coco["annotations"]:
            assert a["iscrowd"] == 0 and a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
        sizes = {im["file_name"]: (im["width"], im["height"]) for im in read.coco["images"]}
        assert set(sizes.values()) == {(64, 64)}


def test_every_bad_line_is_named(tmp_path):
    data_yaml, _ = make_yolo(tmp_path)
    labels = data_yaml.parent / "labels" / "train"
    (labels / "train_00000.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n"  # fine
        "7 0.5 0.5 0.2 0.2\n"  # class past names
        "1 1.5 0.5 0.2 0.2\n"  # outside [0, 1]
        "1 0.5 0.5 0.2\n"  # wrong field count
        "\n"
        "a b c d e\n"  # not numbers
        "-1 0.5 0.5 0.2 0.2\n"
    )
    read = read_yolo(data_yaml, "train")
    f = "labels/train/train_00000.txt"
    assert read.problems == [
        f"{f} line 2: class 7 but data.yaml names 4 classes",
        f"{f} line 3: coordinates outside [0, 1]: 1.5 0.5 0.2 0.2",
        f"{f} line 4: expected 'class cx cy w h' (5 fields) or a polygon 'class x1 y1 ... xn yn' "
        "(3 or more points: an odd number of 7 or more fields), got 4 fields",
        f"{f} line 6: not numbers: 'a b c d e'",
        f"{f} line 7: class -1 but data.yaml names 4 classes",
    ]
    (data_yaml.parent / "images" / "train" / "broken.png").write_bytes(b"not a png")
    read = read_yolo(data_yaml, "train")
    assert len(read.problems) == 6 and read.problems[0].startswith("images/train/broken.png: ")
    with pytest.raises(DatasetError, match=r"YOLO dataset .*\(train split\): 6 problems: .*line 2"):
        YoloSource(str(data_yaml), str(tmp_path / "cache")).prepare()


def test_bad_data_yaml(tmp_path):
    data_yaml, _ = make_yolo(tmp_path)
    data_yaml.write_text("train: images/train\nval: images/val\n")
    with pytest.raises(DatasetError, match=r"data.yaml has no 'names'"):
        read_yolo(data_yaml, "train")
    data_yaml.write_text("names: [a]\ntrain: images/nope\nval: images/val\n")
    with pytest.raises(FileNotFoundError, match=r"'train' image folder is missing: .*nope"):
        read_yolo(data_yaml, "train")
    data_yaml.write_text("names: {0: a, 2: b}\ntrain: images/train\n")
    with pytest.raises(DatasetError, match=r"'names' keys must be 0..K-1, got \[0, 2\]"):
        read_yolo(data_yaml, "train")
    with pytest.raises(FileNotFoundError, match="data_yaml: file not found"):
        read_yolo(tmp_path / "missing.yaml", "train")


def test_empty_split_and_box_clipping(tmp_path):
    root = tmp_path / "y"
    (root / "images" / "val").mkdir(parents=True)
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (40, 20)).save(root / "images" / "train" / "a.jpg")
    (root / "labels" / "train" / "a.txt").write_text("0 0.05 0.5 0.2 1.0\n")
    (root / "data.yaml").write_text("names: [thing]\ntrain: images/train\nval: images/val\n")
    read = read_yolo(root / "data.yaml", "train")
    assert read.coco["images"] == [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 20}]
    # cx 2 px, w 8 px: x from -2 (clipped to 0) to 6
    assert read.coco["annotations"][0]["bbox"] == pytest.approx([0, 0, 6, 20])
    empty = read_yolo(root / "data.yaml", "val")
    assert empty.coco["images"] == [] and empty.coco["annotations"] == [] and not empty.problems


def test_source_converts_once_and_feeds_the_datamodule(tmp_path):
    data_yaml, _ = make_yolo(tmp_path)
    source = YoloSource(str(data_yaml), str(tmp_path / "cache"))
    dm = DetectionDataModule(source, num_classes=None, batch_size=2)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 4 and source.class_names == list(CLASSES)
    assert dm.train_set.class_names == list(CLASSES)
    split = source.splits()["train"]
    assert split.image_dir == data_yaml.parent / "images" / "train"
    assert split.ann_file.parent.parent == tmp_path / "cache"
    written = split.ann_file.stat().st_mtime_ns
    YoloSource(str(data_yaml), str(tmp_path / "cache")).prepare()  # same inputs: cached
    assert split.ann_file.stat().st_mtime_ns == written
    label = data_yaml.parent / "labels" / "train" / "train_00000.txt"
    label.write_text("0 0.5 0.5 0.5 0.5\n")
    again = YoloSource(str(data_yaml), str(tmp_path / "cache"))
    again.prepare()  # a changed label file: a new conversion
    assert again.splits()["train"].ann_file != split.ann_file


def test_yolo_seg_polygons_become_segmentations(tmp_path):
    from PIL import Image
    from pycocotools import mask as mask_utils

    from visdet.data.coco import CocoDetection

    root = tmp_path / "seg"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (40, 20)).save(root / "images" / "train" / "a.png")
    (root / "labels" / "train" / "a.txt").write_text(
        "1 0.1 0.1 0.6 0.1 0.6 0.9\n"  # a triangle: (4, 2), (24, 2), (24, 18)
        "0 0.5 0.5 0.2 0.2\n"  # a plain box in the same file
        "0 0.1 0.1 0.6 0.1 0.6\n"  # 6 fields: neither
        "0 0.1 0.1 0.6 0.1 0.6 1.9\n"  # a polygon point outside [0, 1]
    )
    (root / "data.yaml").write_text("names: [box, tri]\ntrain: images/train\nval: images/train\n")
    read = read_yolo(root / "data.yaml", "train")
    assert len(read.problems) == 2
    assert read.problems[0].startswith("labels/train/a.txt line 3: expected 'class cx cy w h'")
    assert read.problems[0].endswith("got 6 fields")
    assert read.problems[1] == (
        "labels/train/a.txt line 4: coordinates outside [0, 1]: 0.1 0.1 0.6 0.1 0.6 1.9"
    )
    tri, box = read.coco["annotations"]
    assert tri["segmentation"] == [pytest.approx([4, 2, 24, 2, 24, 18])]
    assert tri["bbox"] == pytest.approx([4, 2, 20, 16]) and tri["area"] == pytest.approx(160)
    assert "segmentation" not in box and box["area"] == pytest.approx(8 * 4)
    (root / "labels" / "train" / "a.txt").write_text("1 0.1 0.1 0.6 0.1 0.6 0.9\n")
    read = read_yolo(root / "data.yaml", "train")
    (tmp_path / "ann.json").write_text(json.dumps(read.coco))
    dataset = CocoDetection(tmp_path / "ann.json", read.image_dir, cache_dir=None, masks=True)
    (rle,) = dataset[0][1]["masks_rle"]
    assert abs(int(mask_utils.area(rle)) - 160) <= 20  # the triangle's pixels, edges aside
