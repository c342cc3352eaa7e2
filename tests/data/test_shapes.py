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


def test_instance_masks_are_the_visible_silhouettes(tmp_path):
    """Each RLE mask: its bbox and area are the annotation's, masks of one image never overlap
    (occlusion respected), and every mask pixel has one colour (the shape's own: nothing else
    is drawn over a visible pixel)."""
    import numpy as np
    from PIL import Image
    from pycocotools import mask as mask_utils

    root = ensure_shapes_dataset(tmp_path, SMALL)
    data = json.loads((root / "instances_train.json").read_text())
    files = {i["id"]: i["file_name"] for i in data["images"]}
    by_image: dict[int, list] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    overlapping = 0
    for image_id, anns in by_image.items():
        pixels = np.asarray(Image.open(root / "train" / files[image_id]).convert("RGB"))
        union = np.zeros((64, 64), dtype=np.int32)
        for ann in anns:
            m = mask_utils.decode(ann["segmentation"]).astype(bool)
            ys, xs = np.nonzero(m)
            x0, y0 = int(xs.min()), int(ys.min())
            assert ann["bbox"] == [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0]
            assert ann["area"] == int(m.sum()) == int(mask_utils.area(ann["segmentation"]))
            assert len(np.unique(pixels[m], axis=0)) == 1
            union += m
        overlapping += int((union > 1).sum())
    assert overlapping == 0
    plain_settings = ShapesSettings(**{**SMALL.__dict__, "masks": False})
    boxes_only = ensure_shapes_dataset(tmp_path / "plain", plain_settings)
    plain = json.loads((boxes_only / "instances_train.json").read_text())
    assert "segmentation" not in plain["annotations"][0]
    assert [a["bbox"] for a in plain["annotations"]] == [a["bbox"] for a in data["annotations"]]
