"""Time ``evaluate_coco`` with each backend and ``tide_errors`` on a generated COCO set.

    .venv/bin/python scripts/bench_cocoeval.py [--images 5000] [--repeats 3] [--seed 0]

Generates (seeded) an annotation file of ``--images`` images (5 categories with gaps in their
ids, ~8% images without annotations, crowd regions on ~5%) and a results file of 20-100
detections per image (jittered ground truth, some relabelled, duplicates, false positives),
writes both to a temporary folder, and prints a table: median wall time of ``--repeats`` runs
(whole call, and COCOeval's evaluate+accumulate+summarize alone), and whether each backend's
stats and per-class values equal pycocotools'. No assertions: numbers for the docs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from visdet.metrics.coco_eval import STAT_NAMES, evaluate_coco, faster_coco_eval_installed
from visdet.metrics.tide import tide_errors

CATEGORY_IDS = (1, 2, 5, 8, 13)


def make_dataset(num_images: int, seed: int) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for image_id in range(1, num_images + 1):
        w, h = int(rng.integers(320, 1024)), int(rng.integers(320, 1024))
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": w, "height": h})
        n_gt = 0 if rng.random() < 0.08 else int(rng.integers(1, 16))
        sides = np.exp(rng.uniform(np.log(4), np.log(min(w, h) * 0.6), (n_gt, 2)))
        xy = rng.uniform(0, 1, (n_gt, 2)) * (np.array([w, h]) - sides)
        for (x, y), (bw, bh) in zip(xy, sides, strict=True):
            cat = int(rng.choice(CATEGORY_IDS))
            box = [float(x), float(y), float(bw), float(bh)]
            anns.append(_ann(len(anns) + 1, image_id, cat, box, crowd=0))
            for _ in range(int(rng.integers(0, 3))):  # 0-2 detections per object
                jitter = rng.normal(0, 0.12, 4) * np.array([bw, bh, bw, bh])
                label = cat if rng.random() > 0.08 else int(rng.choice(CATEGORY_IDS))
                d = [x + jitter[0], y + jitter[1], max(bw + jitter[2], 1), max(bh + jitter[3], 1)]
                dets.append(_det(image_id, label, d, float(rng.beta(5, 2))))
        if rng.random() < 0.05:
            anns.append(_ann(len(anns) + 1, image_id, 1, [0.0, 0.0, w / 3, h / 3], crowd=1))
        for _ in range(max(int(rng.integers(20, 101)) - n_gt, 0)):  # false positives
            bw, bh = float(rng.uniform(4, w / 3)), float(rng.uniform(4, h / 3))
            box = [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), bw, bh]
            dets.append(_det(image_id, int(rng.choice(CATEGORY_IDS)), box, float(rng.beta(2, 5))))
    cats = [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def _ann(ann_id, image_id, cat, box, crowd):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "bbox": box,
        "area": box[2] * box[3],
        "iscrowd": crowd,
    }


def _det(image_id, cat, box, score):
    return {
        "image_id": image_id,
        "category_id": cat,
        "bbox": [float(v) for v in box],
        "score": score,
    }


def timed(fn, repeats: int):
    walls, results = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        results.append(fn())
        walls.append(time.perf_counter() - start)
    return statistics.median(walls), results[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data, dets = make_dataset(args.images, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "annotations.json", Path(tmp) / "detections.json"
        gt_path.write_text(json.dumps(data))
        dt_path.write_text(json.dumps(dets))
        print(
            f"{len(data['images'])} images, {len(data['annotations'])} annotations "
            f"({sum(a['iscrowd'] for a in data['annotations'])} crowd), {len(dets)} detections"
        )
        backends = ["pycocotools"] + (["faster_coco_eval"] if faster_coco_eval_installed() else [])
        rows, reference = [], None
        for backend in backends:
            evals = []

            def run(backend=backend, evals=evals):
                e = evaluate_coco(gt_path, dt_path, backend=backend)
                evals.append(e.seconds)
                return e

            wall, result = timed(run, args.repeats)
            if reference is None:
                reference = result
            same = max(abs(result.stats[k] - reference.stats[k]) for k in STAT_NAMES)
            same_pc = max(
                abs(a[k] - b[k])
                for a, b in zip(result.per_class, reference.per_class, strict=True)
                for k in ("AP", "AP50", "AR100")
            )
            rows.append(
                (
                    f"evaluate_coco {backend}",
                    wall,
                    statistics.median(evals),
                    f"AP {result.stats['AP']:.4f}; max |diff| vs pycocotools: stats "
                    f"{same:.1e}, per-class {same_pc:.1e}",
                )
            )
        wall, tide = timed(lambda: tide_errors(gt_path, dt_path), args.repeats)
        d = ", ".join(f"{k} {v:.3f}" for k, v in tide["dAP"].items())
        rows.append(("tide_errors", wall, float("nan"), f"AP50 {tide['AP']:.4f}; dAP {d}"))
    print(f"\n{'what':<32} {'wall s':>8} {'eval s':>8}  notes (median of {args.repeats})")
    for name, wall, inner, note in rows:
        inner_text = f"{inner:8.2f}" if inner == inner else f"{'-':>8}"
        print(f"{name:<32} {wall:8.2f} {inner_text}  {note}")


if __name__ == "__main__":
    main()
