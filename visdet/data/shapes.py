"""The built-in synthetic dataset: coloured shapes on cluttered backgrounds, written to disk
as a real COCO-format dataset (PNG images + ``instances_train.json`` / ``instances_val.json``)
and then read through the same COCO code path as real data. Each object's ``segmentation`` is
its exact visible silhouette (the shape minus what later shapes cover) as COCO RLE, so the
built-in data serves instance segmentation too; its ``bbox`` and ``area`` are the mask's.

Generation is deterministic in ``seed`` and all settings; a finished dataset is recognised by
a ``done.json`` stamp holding those settings, so it is generated once per setting.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

CLASSES = ("rectangle", "circle", "triangle", "cross")


@dataclass(frozen=True)
class ShapesSettings:
    num_train: int = 600
    num_val: int = 150
    image_size: int = 128
    max_objects: int = 4
    min_object_size: int = 14
    max_object_size: int = 56
    empty_fraction: float = 0.05
    seed: int = 0
    # write each object's visible silhouette as an RLE segmentation (also part of the cache
    # key: datasets written before masks existed are regenerated)
    masks: bool = True


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    kind: str,
    x: int,
    y: int,
    w: int,
    h: int,
    colour: tuple[int, int, int],
) -> None:
    if kind == "rectangle":
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
    elif kind == "circle":
        draw.ellipse([x, y, x + w - 1, y + h - 1], fill=colour)
    elif kind == "triangle":
        draw.polygon([(x + w / 2, y), (x + w - 1, y + h - 1), (x, y + h - 1)], fill=colour)
    else:  # cross: two bars of a third of the size
        tw, th = max(2, w // 3), max(2, h // 3)
        draw.rectangle([x + (w - tw) // 2, y, x + (w - tw) // 2 + tw - 1, y + h - 1], fill=colour)
        draw.rectangle([x, y + (h - th) // 2, x + w - 1, y + (h - th) // 2 + th - 1], fill=colour)


def _background(rng: random.Random, size: int) -> Image.Image:
    """Smooth two-colour gradient plus clutter: thin lines and small dots."""
    a = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    b = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    pixels = a * (1 - t[..., None]) + b * t[..., None]
    img = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 8)):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        pts = [(rng.randint(0, size), rng.randint(0, size)) for _ in range(2)]
        draw.line(pts, fill=colour, width=1)
    for _ in range(rng.randint(5, 20)):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        cx, cy, r = rng.randint(0, size), rng.randint(0, size), rng.randint(1, 2)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    return img


def _render(rng: random.Random, s: ShapesSettings) -> tuple[Image.Image, list[dict]]:
    """One image and its objects (visible-extent boxes, xywh)."""
    size = s.image_size
    img = _background(rng, size)
    if rng.random() < s.empty_fraction:
        return img, []
    masks, kinds = [], []
    for _ in range(rng.randint(1, s.max_objects)):
        for _attempt in range(10):
            w = rng.randint(s.min_object_size, s.max_object_size)
            h = max(s.min_object_size, min(s.max_object_size, int(w * rng.uniform(0.6, 1.6))))
            x, y = rng.randint(0, size - w), rng.randint(0, size - h)
            kind = rng.choice(CLASSES)
            layer = Image.new("L", (size, size), 0)
            _draw_shape(ImageDraw.Draw(layer), kind, x, y, w, h, 255)
            mask = np.asarray(layer) > 0
            # accept if the new shape hides at most 30% of any earlier one
            if all((m & mask).sum() <= 0.3 * m.sum() for m in masks):
                break
        else:
            continue
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        _draw_shape(ImageDraw.Draw(img), kind, x, y, w, h, colour)
        masks.append(mask)
        kinds.append(kind)
    objects = []
    for i, (mask, kind) in enumerate(zip(masks, kinds, strict=True)):
        visible = mask.copy()
        for later in masks[i + 1 :]:
            visible &= ~later
        ys, xs = np.nonzero(visible)
        if len(xs) == 0:
            continue
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        obj = {
            "category_id": CLASSES.index(kind) + 1,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": int(visible.sum()),
        }
        if s.masks:
            rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
            obj["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode()}
        objects.append(obj)
    return img, objects


def _write_split(root: Path, split: str, count: int, rng: random.Random, s: ShapesSettings) -> None:
    image_dir = root / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        img, objects = _render(rng, s)
        name = f"{split}_{i:05d}.png"
        img.save(image_dir / name)
        images.append(
            {"id": i + 1, "file_name": name, "width": s.image_size, "height": s.image_size}
        )
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "iscrowd": 0, **obj})
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
    }
    (root / f"instances_{split}.json").write_text(json.dumps(coco))


def ensure_shapes_dataset(root: str | os.PathLike, settings: ShapesSettings) -> Path:
    """Generate the dataset under ``root/shapes_<hash>`` unless it already exists; return it.

    Written into a temporary folder and renamed when complete, so an interrupted run never
    leaves a half-written dataset behind."""
    key = json.dumps(asdict(settings), sort_keys=True)
    digest = format(abs(hash_settings(key)), "x")[:10]
    target = Path(root) / f"shapes_{digest}"
    if (target / "done.json").exists():
        return target
    Path(root).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".shapes_tmp_", dir=root))
    try:
        rng = random.Random(settings.seed)
        _write_split(tmp, "train", settings.num_train, rng, settings)
        _write_split(tmp, "val", settings.num_val, rng, settings)
        (tmp / "done.json").write_text(key)
        if target.exists():  # a stale, unfinished copy
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def hash_settings(text: str) -> int:
    """A stable (not per-process salted) hash of the settings text."""
    h = 1469598103934665603
    for byte in text.encode():
        h = ((h ^ byte) * 1099511628211) % (1 << 64)
    return h
