"""``visdet data convert`` in process (the same Hydra app as the command): COCO -> YOLO ->
COCO round trip within 0.01 px, VOC -> COCO keeping ``difficult``, and one-line errors."""

from __future__ import annotations

import json
import random
import sys

import pytest
from PIL import Image

from visdet.cli import main as visdet_main

SIZES = {"wide.png": (4000, 30), "a.png": (64, 48), "sub/b.png": (37, 91), "empty.png": (20, 20)}
CATEGORIES = [{"id": 7, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 40, "name": "bird"}]


def write_coco(root):
    """A COCO file with fractional boxes inside the images, one crowd box, one empty image
    and category ids out of order and not contiguous."""
    rng = random.Random(0)
    images, annotations = [], []
    for image_id, (name, (w, h)) in enumerate(SIZES.items(), start=1):
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h)).save(root / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for _ in range(0 if name == "empty.png" else 4):
            x, y = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
            bw, bh = rng.uniform(1, w - x), rng.uniform(1, h - y)
            cat = rng.choice(CATEGORIES)["id"]
            annotations.append(
                {"id": 100 + len(annotations), "image_id": image_id, "category_id": cat}
                | {"bbox": [x, y, bw, bh], "iscrowd": 0}
            )
    annotations.append({"id": 999, "image_id": 2, "category_id": 2, "bbox": [1, 1, 5, 5],
                        "iscrowd": 1})  # fmt: skip
    ann = root / "instances_train.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": CATEGORIES}))  # fmt: skip
    return ann, json.loads(ann.read_text())


def convert(monkeypatch, tmp_path, *args):
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # Hydra reads sys.argv: restored after
    visdet_main(["data", "convert", *args, f"hydra.run.dir={tmp_path / 'run'}"])


def boxes_by_file(coco: dict) -> dict[str, list[tuple[str, list[float]]]]:
    """``{file_name: sorted [(class name, bbox)]}`` of the non-crowd boxes."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    out = {f: [] for f in files.values()}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0):
            out[files[a["image_id"]]].append((names[a["category_id"]], a["bbox"]))
    return {f: sorted(v, key=lambda b: (b[0], b[1])) for f, v in out.items()}


def test_coco_to_yolo_to_coco_round_trip_within_a_hundredth_of_a_pixel(
    tmp_path, monkeypatch, capsys
):
    ann, original = write_coco(tmp_path)
    yolo, back = tmp_path / "yolo", tmp_path / "back"
    convert(monkeypatch, tmp_path, f"src={ann}", "src_format=coco",
            f"src_images={tmp_path / 'images'}", f"dst={yolo}", "dst_format=yolo")  # fmt: skip
    assert "train: 4 images (linked), 12 boxes" in capsys.readouterr().out
    data_yaml = (yolo / "data.yaml").read_text()
    assert 'names:\n  0: "dog"\n  1: "cat"\n  2: "bird"\n' in data_yaml  # category-id order
    assert (yolo / "labels" / "train" / "empty.txt").read_text() == ""
    assert (yolo / "images" / "train" / "sub" / "b.png").is_symlink()
    wide = (yolo / "labels" / "train" / "wide.txt").read_text().splitlines()
    assert len(wide) == 4 and all(len(v.split(".")[1]) == 8 for v in wide[0].split()[1:])
    assert len((yolo / "labels" / "train" / "a.txt").read_text().splitlines()) == 4  # no crowd

    convert(monkeypatch, tmp_path, f"src={yolo / 'data.yaml'}", "src_format=yolo",
            f"dst={back}", "dst_format=coco")  # fmt: skip
    result = json.loads((back / "annotations" / "instances_train.json").read_text())
    assert [a["id"] for a in result["annotations"]] == list(range(1, 13))
    assert [c["name"] for c in result["categories"]] == ["dog", "cat", "bird"]
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in result["images"]}
    assert sizes == SIZES  # read from the image files, file_name relative to the folder
    expected, got = boxes_by_file(original), boxes_by_file(result)
    assert set(got) == set(expected)
    for name in expected:
        assert [c for c, _ in got[name]] == [c for c, _ in expected[name]]
        for (_, a), (_, b) in zip(got[name], expected[name], strict=True):
            assert max(abs(u - v) for u, v in zip(a, b, strict=True)) < 0.01, (name, a, b)
    readme = (back / "README.txt").read_text()
    assert f"images_root {(yolo / 'images' / 'train').resolve()}" in readme


def test_boxes_past_the_border_are_clipped_and_copies_on_request(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 50)).save(tmp_path / "images" / "x.png")
    coco = {
        "images": [{"id": 1, "file_name": "x.png", "width": 100, "height": 50}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [-10, 10, 60, 80]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 0, 10]},  # no area
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    convert(monkeypatch, tmp_path, f"src={tmp_path / 'gt.json'}", "src_format=coco",
            f"src_images={tmp_path / 'images'}", f"dst={tmp_path / 'y'}", "dst_format=yolo",
            "copy_images=true")  # fmt: skip
    # clipped to x 0..50, y 10..50: centre (25, 30), size 50 x 40
    label = (tmp_path / "y" / "labels" / "gt" / "x.txt").read_text()
    assert label == "0 0.25000000 0.60000000 0.50000000 0.80000000\n"
    copied = tmp_path / "y" / "images" / "gt" / "x.png"
    assert (
        not copied.is_symlink()
        and copied.read_bytes() == (tmp_path / "images" / "x.png").read_bytes()
    )


def write_voc(root):
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    objects = {
        "train": [("person", (1, 1, 40, 30), 1, 0), ("car", (5, 6, 20, 25), 0, 1)],
        "val": [("car", (2, 3, 10, 12), 0, 0)],
    }
    for split, objs in objects.items():
        Image.new("RGB", (40, 30)).save(root / "JPEGImages" / f"{split}1.png")
        body = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><truncated>{t}</truncated>"
            f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
            f"<ymax>{b[3]}</ymax></bndbox></object>"
            for n, b, d, t in objs
        )
        xml = f"<annotation><filename>{split}1.png</filename>{body}</annotation>"
        (root / "Annotations" / f"{split}1.xml").write_text(xml)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(f"{split}1\n")


def test_voc_to_coco_keeps_difficult_and_truncated(tmp_path, monkeypatch, capsys):
    write_voc(tmp_path / "voc")
    convert(monkeypatch, tmp_path, f"src={tmp_path / 'voc'}", "src_format=voc",
            f"dst={tmp_path / 'out'}", "dst_format=coco")  # fmt: skip
    out = capsys.readouterr().out
    assert f"file_names are relative to {(tmp_path / 'voc' / 'JPEGImages').resolve()}" in out
    train = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    val = json.loads((tmp_path / "out" / "annotations" / "instances_val.json").read_text())
    assert train["categories"] == val["categories"]
    assert [c["name"] for c in train["categories"]] == ["car", "person"]
    by_name = {c["id"]: c["name"] for c in train["categories"]}
    got = {by_name[a["category_id"]]: a for a in train["annotations"]}
    assert got["person"]["difficult"] == 1 and got["person"]["truncated"] == 0
    assert got["car"]["difficult"] == 0 and got["car"]["truncated"] == 1
    assert got["person"]["bbox"] == [0, 0, 40, 30]  # 1-based inclusive corners: whole image
    assert [a["id"] for a in train["annotations"]] == [1, 2]
    assert (tmp_path / "out" / "images" / "val").resolve() == (
        tmp_path / "voc" / "JPEGImages"
    ).resolve()


def test_an_empty_coco_set_converts_to_an_empty_yolo_set(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "instances_val.json").write_text(json.dumps(coco))
    src = tmp_path / "instances_val.json"
    images, dst = tmp_path / "images", tmp_path / "y"
    convert(monkeypatch, tmp_path, f"src={src}", "src_format=coco", f"src_images={images}",
            f"dst={dst}", "dst_format=yolo")  # fmt: skip
    assert "val: images/val" in (tmp_path / "y" / "data.yaml").read_text()
    assert list((tmp_path / "y" / "labels" / "val").iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["src=x", "src_format=kitti", "dst=y", "dst_format=coco"],
         "data convert failed: src_format: expected one of yolo, voc, coco, got 'kitti'"),
        (["src=x", "src_format=coco", "dst=y", "dst_format=voc"],
         "data convert failed: dst_format: expected one of coco, yolo, got 'voc'"),
        (["src={tmp}/missing.yaml", "src_format=yolo", "dst={tmp}/y", "dst_format=coco"],
         "data convert failed: src: not found: {tmp}/missing.yaml"),
        (["src={tmp}/gt.json", "src_format=coco", "dst={tmp}/y", "dst_format=yolo"],
         "data convert failed: src_images: a COCO source needs src_images=DIR"),
        (["src={tmp}/gt.json", "src_images={tmp}", "src_format=coco", "dst={tmp}",
          "dst_format=yolo"], "data convert failed: dst: {tmp} exists and is not an empty folder"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(tmp_path, monkeypatch, args, message):
    (tmp_path / "gt.json").write_text(json.dumps({"images": [], "annotations": [],
                                                  "categories": []}))  # fmt: skip
    with pytest.raises(SystemExit) as stopped:
        convert(monkeypatch, tmp_path, *[a.format(tmp=tmp_path) for a in args])
    text = str(stopped.value.code)
    assert text.startswith(message.format(tmp=tmp_path)) and "\n" not in text
