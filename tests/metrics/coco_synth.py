"""Seeded COCO annotation and results dicts with the oddities evaluation must handle: crowd
regions, gaps in category ids (1, 3, 7, and 9 without any ground truth), images without
annotations, an annotation with id 0, tiny boxes, and results with jitter, duplicates and false
positives. Plain Python and numpy, no visdet code."""

from __future__ import annotations

import json

import numpy as np

CATEGORY_IDS = (1, 3, 7, 9)  # 9 has no ground truth


def rect_polygon(x: float, y: float, w: float, h: float) -> list[float]:
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def make_annotations(seed: int = 0, num_images: int = 12, zero_id: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for image_id in range(1, num_images + 1):
        w, h = int(rng.integers(120, 400)), int(rng.integers(120, 400))
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": w, "height": h})
        if image_id % 5 == 0:
            continue  # an image without annotations
        for _ in range(int(rng.integers(1, 7))):
            size = float(rng.choice([3.0, 12.0, 40.0, 110.0]))  # tiny, small, medium, large
            bw = min(size * float(rng.uniform(0.7, 1.3)), w - 2)
            bh = min(size * float(rng.uniform(0.7, 1.3)), h - 2)
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice(CATEGORY_IDS[:3])),
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                    "segmentation": [rect_polygon(x, y, bw, bh)],
                }
            )
        if image_id % 4 == 1:  # a crowd region over a corner
            cw, ch = w / 3, h / 3
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice(CATEGORY_IDS[:3])),
                    "bbox": [0.0, 0.0, cw, ch],
                    "area": cw * ch,
                    "iscrowd": 1,
                    "segmentation": [rect_polygon(0.0, 0.0, cw, ch)],
                }
            )
    if zero_id:
        anns[0]["id"] = 0
    cats = [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS]
    return {"images": images, "annotations": anns, "categories": cats}


def make_results(data: dict, seed: int = 1) -> list[dict]:
    """Jittered ground truth (some relabelled, some duplicated), plus false positives."""
    rng = np.random.default_rng(seed)
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    dets = []
    for a in data["annotations"]:
        if rng.random() < 0.15:
            continue  # missed
        x, y, w, h = a["bbox"]
        for _ in range(2 if rng.random() < 0.2 else 1):  # sometimes a duplicate
            jitter = rng.normal(0, 0.15, 4) * np.array([w, h, w, h])
            cat = a["category_id"] if rng.random() > 0.1 else int(rng.choice(CATEGORY_IDS))
            box = [x + jitter[0], y + jitter[1], max(w + jitter[2], 0.5), max(h + jitter[3], 0.5)]
            dets.append(_det(a["image_id"], cat, box, float(rng.uniform(0.05, 1.0))))
    for image_id, (iw, ih) in sizes.items():
        for _ in range(int(rng.integers(0, 4))):
            bw, bh = float(rng.uniform(2, iw / 2)), float(rng.uniform(2, ih / 2))
            box = [float(rng.uniform(0, iw - bw)), float(rng.uniform(0, ih - bh)), bw, bh]
            dets.append(_det(image_id, int(rng.choice(CATEGORY_IDS)), box, float(rng.random())))
    return dets


def _det(image_id: int, cat: int, box, score: float) -> dict:
    x, y, w, h = (float(v) for v in box)
    return {
        "image_id": image_id,
        "category_id": cat,
        "bbox": [x, y, w, h],
        "score": round(score, 4),  # rounded: equal scores happen, as in real files
        "segmentation": [rect_polygon(x, y, w, h)],
    }


def renumbered(data: dict) -> dict:
    """The same annotations with ids 1..N in file order (what COCOeval needs)."""
    anns = [{**a, "id": i} for i, a in enumerate(data["annotations"], start=1)]
    return {**data, "annotations": anns}


def write_json(path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)
