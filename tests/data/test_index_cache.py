import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from visdet.data import index_cache
from visdet.data.coco import CocoDetection
from visdet.data.index_cache import entry_path, resolve_cache_dir


def write_split(root, num_images=6):
    """Images of varied sizes (one broken, one with an EXIF turn annotated on the raw pixels),
    boxes including crowd and degenerate ones; returns (ann_file, image_dir)."""
    image_dir = root / "img"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(1, num_images + 1):
        w, h = 20 + 3 * i, 16 + 2 * i
        name = f"{i}.png"
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(image_dir / name)
        for j in range(i % 4):
            box = [float(j), 1.5, 5.25 + j, 4.0 if j != 2 else 0.5]  # j == 2: under 1 px high
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": 5 if j % 2 else 2,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(j == 1 and i == 3),
                }
            )
    (image_dir / "5.png").write_bytes(b"not a png")  # unreadable: skipped
    exif = Image.Exif()
    exif[0x0112] = 6  # turned by 90 degrees, annotated on the raw pixels
    Image.new("RGB", (images[1]["width"], images[1]["height"])).save(image_dir / "2.jpg", exif=exif)
    images[1]["file_name"] = "2.jpg"
    categories = [{"id": 2, "name": "cat"}, {"id": 5, "name": "dog"}]
    ann_file = root / "ann.json"
    ann_file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return ann_file, image_dir


def summary(ds):
    """Everything start-up computes, in plain values."""
    return {
        "targets": [
            {
                "boxes": t["boxes"].tolist(),
                "boxes_dtype": t["boxes"].dtype,
                "labels": t["labels"].tolist(),
                "labels_dtype": t["labels"].dtype,
                "image_id": t["image_id"],
                "orig_size": t["orig_size"],
            }
            for t in ds.targets
        ],
        "apply_orientation": ds.apply_orientation,
        "unreadable": ds.unreadable,
        "class_names": ds.class_names,
        "image_ids": ds.image_ids,
        "dropped_boxes": ds.dropped_boxes,
        "aspect_ratios": ds.aspect_ratios(),
    }


def test_hit_gives_what_the_scan_gives(tmp_path, caplog):
    ann_file, image_dir = write_split(tmp_path)
    with caplog.at_level(logging.WARNING):
        reference = CocoDetection(ann_file, image_dir, cache_dir=None)
    uncached_log = caplog.text
    assert reference.unreadable and not all(reference.apply_orientation)
    assert reference.dropped_boxes > 0 and reference.targets[0]["boxes"].shape == (1, 4)
    cache = tmp_path / "cache"
    first = CocoDetection(ann_file, image_dir, cache_dir=cache)
    assert len(list(cache.glob("*.json"))) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        second = CocoDetection(ann_file, image_dir, cache_dir=cache)
    assert caplog.text == uncached_log  # the same warnings on a hit
    assert summary(first) == summary(reference) == summary(second)
    for index in range(len(reference)):
        a, b = reference[index], second[index]
        if isinstance(a, tuple):
            assert torch.equal(a[0], b[0]) and a[1]["boxes"].equal(b[1]["boxes"])
        else:
            assert a == b


def test_hit_reads_no_image_header(tmp_path, monkeypatch):
    ann_file, image_dir = write_split(tmp_path)
    cache = tmp_path / "cache"
    CocoDetection(ann_file, image_dir, cache_dir=cache)

    def no_header(*args, **kwargs):
        raise AssertionError("the header scan ran on a cache hit")

    monkeypatch.setattr("visdet.data.coco.read_header", no_header)
    CocoDetection(ann_file, image_dir, cache_dir=cache)


def test_changed_annotation_file_invalidates(tmp_path):
    ann_file, image_dir = write_split(tmp_path)
    cache = tmp_path / "cache"
    CocoDetection(ann_file, image_dir, cache_dir=cache)
    data = json.loads(ann_file.read_text())
    data["annotations"][0]["bbox"] = [2.0, 2.0, 3.0, 3.0]
    data["categories"][0]["name"] = "lynx"
    ann_file.write_text(json.dumps(data))
    ds = CocoDetection(ann_file, image_dir, cache_dir=cache)
    assert summary(ds) == summary(CocoDetection(ann_file, image_dir, cache_dir=None))
    assert ds.class_names[0] == "lynx" and ds.targets[0]["boxes"].tolist()[0] == [2, 2, 5, 5]


def test_touched_image_invalidates(tmp_path):
    ann_file, image_dir = write_split(tmp_path)
    cache = tmp_path / "cache"
    assert 4 in CocoDetection(ann_file, image_dir, cache_dir=cache).unreadable
    info = json.loads(ann_file.read_text())["images"][4]
    Image.new("RGB", (info["width"], info["height"])).save(image_dir / "5.png")  # now readable
    stat = os.stat(image_dir / "5.png")
    os.utime(image_dir / "5.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert CocoDetection(ann_file, image_dir, cache_dir=cache).unreadable == {}


def test_missing_image_still_raises_with_cache(tmp_path):
    ann_file, image_dir = write_split(tmp_path)
    cache = tmp_path / "cache"
    CocoDetection(ann_file, image_dir, cache_dir=cache)
    (image_dir / "3.png").unlink()
    with pytest.raises(FileNotFoundError, match="first: 3.png"):
        CocoDetection(ann_file, image_dir, cache_dir=cache)


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[1, 2]", b'{"key": 3}', b"\xff\xfe", "wrong counts"],
)
def test_corrupt_entry_is_rebuilt(tmp_path, caplog, content):
    ann_file, image_dir = write_split(tmp_path)
    cache = tmp_path / "cache"
    reference = summary(CocoDetection(ann_file, image_dir, cache_dir=cache))
    entry = entry_path(cache, ann_file, image_dir)
    if content == "wrong counts":
        data = json.loads(entry.read_text())
        data["counts"][0] += 1
        content = json.dumps(data).encode()
    entry.write_bytes(content)
    with caplog.at_level(logging.INFO):
        assert summary(CocoDetection(ann_file, image_dir, cache_dir=cache)) == reference
    assert f"index cache {entry}" in caplog.text and "rebuilding" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert summary(CocoDetection(ann_file, image_dir, cache_dir=cache)) == reference
    assert "index cache" not in caplog.text  # the rebuilt entry is a hit


@pytest.mark.parametrize("off", [None, "off"])
def test_cache_off_writes_nothing(tmp_path, monkeypatch, off):
    ann_file, image_dir = write_split(tmp_path)
    monkeypatch.setattr(index_cache, "AUTO_MIN_IMAGES", 0)
    monkeypatch.setenv("VISDET_CACHE", str(tmp_path / "env_cache"))
    monkeypatch.setattr("pathlib.Path.home", lambda: tmp_path / "home")
    ds = CocoDetection(ann_file, image_dir, cache_dir=off)
    assert summary(ds) == summary(CocoDetection(ann_file, image_dir, cache_dir=None))
    assert not (tmp_path / "env_cache").exists() and not (tmp_path / "home").exists()


def test_resolve_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setattr("pathlib.Path.home", lambda: tmp_path / "home")
    monkeypatch.delenv("VISDET_CACHE", raising=False)
    assert resolve_cache_dir(None, 10**6) is None and resolve_cache_dir("off", 10**6) is None
    assert resolve_cache_dir(tmp_path, 1) == tmp_path  # explicit: any size
    assert resolve_cache_dir("auto", index_cache.AUTO_MIN_IMAGES - 1) is None  # small: no cache
    big = index_cache.AUTO_MIN_IMAGES
    assert resolve_cache_dir("auto", big) == tmp_path / "home" / ".cache" / "visdet" / "index"
    monkeypatch.setenv("VISDET_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir("auto", big) == tmp_path / "env"
    monkeypatch.setenv("VISDET_CACHE", "off")
    assert resolve_cache_dir("auto", big) is None
    with pytest.raises(TypeError, match="cache_dir"):
        resolve_cache_dir(3, big)


def test_empty_split(tmp_path):
    (tmp_path / "img").mkdir()
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    cache = tmp_path / "cache"
    for _ in range(2):
        ds = CocoDetection(ann_file, tmp_path / "img", cache_dir=cache)
        assert len(ds) == 0 and ds.targets == [] and ds.num_boxes() == 0
