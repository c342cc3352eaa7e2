"""A small generated COCO set and pycocotools' COCOeval run on it, for the analysis tests."""

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def coco_eval(num_classes: int = 3, num_images: int = 10, seed: int = 0, empty_class=None):
    """COCOeval after evaluate/accumulate/summarize on random boxes with jittered, sometimes
    mislabelled detections plus some strays; ``empty_class`` (0-based) gets no ground truth
    (its precision entries are -1)."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "width": 200, "height": 150, "file_name": f"{i}.jpg"})
        for _ in range(int(rng.integers(1, 6))):
            c = int(rng.integers(0, num_classes))
            if c == empty_class:
                continue
            x, y = rng.uniform(0, 120), rng.uniform(0, 90)
            w, h = rng.uniform(10, 70), rng.uniform(10, 55)
            anns.append(
                {"id": len(anns) + 1, "image_id": i, "category_id": c + 1,
                 "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            )  # fmt: skip
            if rng.random() < 0.8:
                j = rng.normal(0, 4, 4)
                label = c + 1 if rng.random() < 0.85 else int(rng.integers(1, num_classes + 1))
                dets.append(
                    {"image_id": i, "category_id": label, "score": float(rng.random()),
                     "bbox": [x + j[0], y + j[1], max(1, w + j[2]), max(1, h + j[3])]}
                )  # fmt: skip
        for _ in range(int(rng.integers(0, 3))):
            xy = rng.uniform(0, 150, 2).tolist()
            dets.append(
                {"image_id": i, "category_id": int(rng.integers(1, num_classes + 1)),
                 "bbox": [*xy, 20.0, 20.0], "score": float(rng.random())}
            )  # fmt: skip
    categories = [{"id": c + 1, "name": f"c{c}"} for c in range(num_classes)]
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev
