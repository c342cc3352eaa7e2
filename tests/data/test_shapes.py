import json

from visdet.data.shapes import CLASSES, ShapesSettings, ensure_shapes_dataset

SMALL = ShapesSettings(
    num_train=24,
    num_val=8,
    image_size=64,
    min_object_size=10,
    max_object_size=30,
    empty_fraction=0.2,
    seed=3,
)


def test_generation_is_deterministic_and_cached(tmp_path):
    a = ensure_shapes_dataset(tmp_path / "a", SMALL)
    b = ensure_shapes_dataset(tmp_path / "b", SMALL)
    for split in ("train", "val"):
        assert (a / f"instances_{split}.json").read_text() == (
            b / f"instances_{split}.json"
        ).read_text()
        for img in sorted((a / split).iterdir()):
            assert img.read_bytes() == (b / split / img.name).read_bytes()
    stamp = (a / "done.json").stat().st_mtime_ns
    assert ensure_shapes_dataset(tmp_path / "a", SMALL) == a
    assert (a / "done.json").stat().st_mtime_ns == stamp  # not generated again
    other = ensure_shapes_dataset(tmp_path / "a", ShapesSettings(**{**SMALL.__dict__, "seed": 4}))
    assert other != a


def test_content_is_valid_coco(tmp_path):
    root = ensure_shapes_dataset(tmp_path, SMALL)
    data = json.loads((root / "instances_train.json").read_text())
    assert len(data["images"]) == 24
    assert [c["name"] for c in data["categories"]] == list(CLASSES)
    per_image = {i["id"]: 0 for i in data["images"]}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64
        assert 1 <= ann["category_id"] <= len(CLASSES)
        per_image[ann["image_id"]] += 1
    assert 0 in per_image.values(), "some images have no objects"
    assert max(per_image.values()) >= 2
    assert {a["category_id"] for a in data["annotations"]} == set(range(1, len(CLASSES) + 1))
    assert not list(tmp_path.glob(".shapes_tmp_*"))  # no leftovers of the atomic write
