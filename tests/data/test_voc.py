"""Pascal VOC -> COCO dict: the 1-based inclusive corner convention, difficult, bad files."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from test_yolo import boxes_by_file, shapes_coco

from visdet.data import VocSource
from visdet.data.coco_checks import DatasetError
from visdet.data.formats import read_voc
from visdet.data.shapes import CLASSES


def voc_xml(file_name: str, objects: list[tuple[str, list[float], int]]) -> str:
    body = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]:g}</xmin>"
        f"<ymin>{b[1]:g}</ymin><xmax>{b[2]:g}</xmax><ymax>{b[3]:g}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    return f"<annotation><filename>{file_name}</filename>{body}</annotation>"


def make_voc(tmp_path: Path) -> tuple[Path, Path]:
    """The shapes dataset as VOC under ``tmp_path/voc`` (COCO x1 -> xmin = x1 + 1, x2 -> xmax
    = x2); every 3rd object is difficult. Returns (VOC root, shapes root)."""
    shapes = shapes_coco(tmp_path)
    root = tmp_path / "voc"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    for split in ("train", "val"):
        coco = json.loads((shapes / f"instances_{split}.json").read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        ids = []
        for im in coco["images"]:
            shutil.copy(shapes / split / im["file_name"], root / "JPEGImages" / im["file_name"])
            objects = [
                (names[a["category_id"]], [x + 1, y + 1, x + w, y + h], int(a["id"] % 3 == 0))
                for a in coco["annotations"]
                if a["image_id"] == im["id"]
                for x, y, w, h in [a["bbox"]]
            ]
            stem = Path(im["file_name"]).stem
            ids.append(stem)
            (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(im["file_name"], objects))
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root, shapes


def test_boxes_match_the_coco_ground_truth(tmp_path):
    root, shapes = make_voc(tmp_path)
    flags = []
    for split in ("train", "val"):
        read = read_voc(root, split, list(CLASSES))
        assert read.problems == [] and read.image_dir == root / "JPEGImages"
        want = json.loads((shapes / f"instances_{split}.json").read_text())
        assert boxes_by_file(read.coco) == boxes_by_file(want)
        assert all(a["iscrowd"] == 0 for a in read.coco["annotations"])
        flags += [a["difficult"] for a in read.coco["annotations"]]
    assert set(flags) == {0, 1}


def test_one_based_inclusive_corners(tmp_path):
    root = tmp_path / "v"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(root / "JPEGImages" / "a.jpg")
    whole, pixel = [1, 1, 30, 20], [5, 7, 5, 7]  # the whole image; the single pixel (4, 6)
    objects = [("cat", whole, 0), ("dog", pixel, 1)]
    (root / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", objects))
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    read = read_voc(root, "train")
    assert [c["name"] for c in read.coco["categories"]] == ["cat", "dog"]  # sorted names
    a, b = read.coco["annotations"]
    assert a["bbox"] == [0, 0, 30, 20] and a["area"] == 600 and a["difficult"] == 0
    assert b["bbox"] == [4, 6, 1, 1] and b["difficult"] == 1 and b["category_id"] == 2
    assert read.coco["images"] == [{"id": 1, "file_name": "a.jpg", "width": 30, "height": 20}]


def test_every_bad_file_is_named(tmp_path):
    root, _ = make_voc(tmp_path)
    ann = root / "Annotations"
    (ann / "train_00000.xml").write_text("this is not xml <")
    (ann / "train_00001.xml").write_text(voc_xml("nowhere.jpg", []))
    (ann / "train_00002.xml").write_text(
        "<annotation><filename>train_00002.png</filename><object><name>circle</name>"
        "<bndbox><xmin>a</xmin></bndbox></object></annotation>"
    )
    (ann / "train_00003.xml").unlink()
    read = read_voc(root, "train", list(CLASSES)[:2])
    p = read.problems
    assert p[0].startswith("Annotations/train_00000.xml: not XML (")
    assert p[1] == "Annotations/train_00001.xml: names a missing image JPEGImages/nowhere.jpg"
    assert p[2] == (
        "Annotations/train_00002.xml object 1: needs a <name> and numeric <bndbox> corners"
    )
    assert p[3] == "Annotations/train_00003.xml: missing (listed in ImageSets/Main/train.txt)"
    assert any("is not in the classes" in x for x in p[4:])  # classes= leaves two out
    with pytest.raises(DatasetError, match=r"VOC dataset .*\(train split\): \d+ problems: "):
        VocSource(str(root), cache_dir=str(tmp_path / "cache")).prepare()
    with pytest.raises(FileNotFoundError, match=r"VOC split file not found: .*test.txt"):
        read_voc(root, "test")


def test_source_classes_cover_both_splits(tmp_path):
    root, _ = make_voc(tmp_path)
    source = VocSource(str(root), cache_dir=str(tmp_path / "cache"))
    source.prepare()
    assert source.class_names == sorted(CLASSES) and source.num_classes == 4
    for split in source.splits().values():
        coco = json.loads(split.ann_file.read_text())
        assert [c["name"] for c in coco["categories"]] == sorted(CLASSES)
        assert split.image_dir == root / "JPEGImages"


def test_segmentation_object_pngs_become_instance_masks(tmp_path, caplog):
    import numpy as np
    from pycocotools import mask as mask_utils

    from visdet.data.coco import CocoDetection

    root = tmp_path / "v"
    for d in ("Annotations", "JPEGImages", "ImageSets/Segmentation", "SegmentationObject"):
        (root / d).mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(root / "JPEGImages" / "a.jpg")
    Image.new("RGB", (30, 20)).save(root / "JPEGImages" / "b.jpg")
    objects = [("cat", [2, 2, 12, 12], 0), ("dog", [15, 5, 28, 18], 0), ("cat", [1, 1, 4, 4], 0)]
    (root / "Annotations" / "a.xml").write_text(voc_xml("a.jpg", objects))
    (root / "Annotations" / "b.xml").write_text(voc_xml("b.jpg", objects[:1]))
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    values = np.zeros((20, 30), dtype=np.uint8)
    values[2:12, 2:12] = 1
    values[5:18, 15:28] = 2
    values[1:13, 1] = 255  # the void border: no object's pixels
    png = Image.fromarray(values, mode="P")
    png.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0, 0, 0] * 252 + [224, 224, 192])
    png.save(root / "SegmentationObject" / "a.png")
    Image.new("P", (10, 10)).save(root / "SegmentationObject" / "b.png")  # another size
    read = read_voc(root, "train", image_sets="Segmentation")
    assert read.problems == ["SegmentationObject/b.png is 10x10 but its image is 30x20 "
                             "(width x height)"]  # fmt: skip
    masks = [mask_utils.decode(a["segmentation"]) for a in read.coco["annotations"][:3]]
    for index, mask in enumerate(masks, start=1):
        assert np.array_equal(mask, (values == index).astype(np.uint8))
    assert "segmentation" not in read.coco["annotations"][3]  # b: its PNG was refused
    read.coco["annotations"] = read.coco["annotations"][:3]  # object 3 has no pixels
    (tmp_path / "ann.json").write_text(json.dumps(read.coco))
    dataset = CocoDetection(tmp_path / "ann.json", read.image_dir, cache_dir=None, masks=True)
    assert len(dataset[0][1]["masks_rle"]) == 2 and dataset.dropped_boxes == 1
    with pytest.raises(FileNotFoundError, match="ImageSets/Main/train.txt"):
        read_voc(root, "train")
