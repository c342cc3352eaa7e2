"""The COCO evaluation core: COCOeval (pycocotools, or faster-coco-eval) on an annotation file
and a list of results, with the 12 COCO stats, extra area ranges and per-class numbers.

``evaluate_coco`` is what ``visdet eval``, training's final report (``CocoMeanAP``) and the
analysis tools call. It takes care of pycocotools' pitfalls: annotation ids that are 0,
non-integer or repeated (COCOeval marks a match by storing the ground truth's id and tests it
with ``> 0``, and indexes annotations by id; such files are renumbered 1..N in a copy),
annotations without ``iscrowd`` or ``area`` (filled in the copy), its prints (silenced),
``loadRes`` of an empty list (an empty results object instead), and results naming unknown
images or categories (``ResultsFileError`` from ``results_file.load_results``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from visdet.data.coco import load_coco
from visdet.metrics.results_file import load_results

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)
COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
IOU_TYPES = ("bbox", "segm")
BACKENDS = ("pycocotools", "faster_coco_eval")

# "auto" = faster-coco-eval when it can be imported, else pycocotools; decided by measurement.
# faster-coco-eval 1.8.0 gives the same stats and per-class values as pycocotools' COCOeval:
# within 1e-9 in tests/metrics/test_coco_eval.py (crowd regions, category-id gaps, images
# without annotations, annotation ids 0 and repeated, empty results, tiny boxes, an extra area
# range, bbox and segm), and within 2.2e-16 on real files (cocoapi's fake bbox/segm results on
# 100 val2014 images, coco128, raccoon, MMDetection's edge-case samples). It was 4-8x faster on
# those 100 images, and on 5,000 images with 300k detections (scripts/bench_cocoeval.py, 2 CPU
# cores) 6.0 s against 35.0 s for evaluate+accumulate+summarize, 12.2 s against 42.3 s in all.
AUTO_PREFERENCE = ("faster_coco_eval", "pycocotools")


@dataclass
class CocoEvaluation:
    """What one COCO evaluation gives.

    ``stats``: the 12 COCO stats under ``STAT_NAMES`` (-1.0 where COCOeval says absent, e.g. no
    ground truth in that area range), plus ``AP_<name>``/``AR_<name>`` (AR at 100 detections)
    for every area range beyond all/small/medium/large. ``per_class``: one dict per category
    in sorted id order: ``category_id``, ``name``, ``AP``, ``AP50``, ``AR100`` (-1.0 without
    ground truth), ``num_gt`` (non-crowd ground truth in the evaluated images) and ``num_det``
    (detections in the evaluated images, before the 100-per-image limit).
    Arrays: ``precision`` [T, R, K, A, M], ``recall`` [T, K, A, M], ``scores`` [T, R, K, A, M]
    as COCOeval's ``eval``; T = ``iou_thresholds``, R = ``rec_thresholds``, K =
    ``category_ids``, A = ``area_ranges`` (in order, "all" first), M = ``max_dets``.
    """

    iou_type: str
    stats: dict[str, float]
    per_class: list[dict]
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    iou_thresholds: np.ndarray
    rec_thresholds: np.ndarray
    category_ids: list[int]
    area_ranges: dict[str, tuple[float, float]]
    max_dets: list[int]
    image_ids: list[int]
    backend: str
    seconds: float

    def to_json(self) -> dict:
        """A JSON-safe summary (no arrays; ``image_ids`` is the number of images)."""
        return {
            "iou_type": self.iou_type,
            "stats": dict(self.stats),
            "per_class": [dict(c) for c in self.per_class],
            "backend": self.backend,
            "image_ids": len(self.image_ids),
            "category_ids": list(self.category_ids),
            "area_ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in self.area_ranges.items()},
            "max_dets": list(self.max_dets),
            "seconds": self.seconds,
        }


def faster_coco_eval_installed() -> bool:
    """Whether the optional ``faster_coco_eval`` package can be imported."""
    return importlib.util.find_spec("faster_coco_eval") is not None


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> the first installed of ``AUTO_PREFERENCE``; checks the name and that the
    package is installed."""
    if backend == "auto":
        installed = [
            b for b in AUTO_PREFERENCE if b != "faster_coco_eval" or faster_coco_eval_installed()
        ]
        return installed[0]
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend == "faster_coco_eval" and not faster_coco_eval_installed():
        raise ValueError(
            "backend 'faster_coco_eval' needs the faster-coco-eval package "
            "(pip install faster-coco-eval); use backend='pycocotools'"
        )
    return backend


def prepare_ground_truth(coco_gt: COCO | str | os.PathLike) -> COCO:
    """A pycocotools COCO object ready for COCOeval: loaded (and checked) if a path. If any
    annotation id is not a positive integer, or ids repeat, or an annotation lacks ``iscrowd``
    or ``area`` (COCOeval reads both), a copy with the annotations renumbered 1..N in file
    order, ``iscrowd`` 0 and ``area`` w x h where missing (the given object is not touched)."""
    if isinstance(coco_gt, (str, os.PathLike)):
        coco_gt = load_coco(coco_gt)
    if not isinstance(coco_gt, COCO):
        raise TypeError(
            f"coco_gt must be a pycocotools COCO object or an annotation file path, "
            f"got {type(coco_gt).__name__}"
        )
    anns = coco_gt.dataset.get("annotations", [])
    ids = [a.get("id") for a in anns]
    positive = all(type(i) is int and i > 0 for i in ids)  # not bool, not float, not str
    complete = all("iscrowd" in a and "area" in a for a in anns)
    if positive and complete and len(set(ids)) == len(ids):
        return coco_gt
    fixed = COCO()
    fixed.dataset = {
        **coco_gt.dataset,
        "annotations": [
            {
                **a,
                "id": new_id,
                "iscrowd": a.get("iscrowd", 0),
                "area": a["area"] if "area" in a else float(a["bbox"][2] * a["bbox"][3]),
            }
            for new_id, a in enumerate(anns, start=1)
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        fixed.createIndex()
    return fixed


def area_ranges_with_coco(
    area_ranges: dict[str, tuple[float, float]] | None,
) -> dict[str, tuple[float, float]]:
    """COCO's four ranges (all, small, medium, large, in that order) with ``area_ranges``
    added after them or overriding their bounds; checks names and bounds."""
    ranges = dict(COCO_AREA_RANGES)
    if area_ranges is None:
        return ranges
    if not isinstance(area_ranges, dict):
        raise TypeError(
            f"area_ranges must be a dict name -> (lo, hi), got {type(area_ranges).__name__}"
        )
    for name, bounds in area_ranges.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"area_ranges: range names must be non-empty strings, got {name!r}")
        if bounds is None and name in COCO_AREA_RANGES:
            raise ValueError(
                f"area_ranges[{name!r}]: COCO's ranges all/small/medium/large cannot be "
                "removed (the 12 COCO stats need them); give bounds (lo, hi) to override"
            )
        ok = (
            isinstance(bounds, (list, tuple))
            and len(bounds) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds)
            and all(math.isfinite(v) for v in bounds)
            and 0 <= bounds[0] <= bounds[1]
        )
        if not ok:
            raise ValueError(
                f"area_ranges[{name!r}] must be (lo, hi) with finite 0 <= lo <= hi "
                f"(areas in pixels squared), got {bounds!r}"
            )
        ranges[name] = (float(bounds[0]), float(bounds[1]))
    return ranges


def evaluate_coco(
    coco_gt: COCO | str | os.PathLike,
    results: list[dict] | str | os.PathLike,
    iou_type: str = "bbox",
    image_ids: list[int] | None = None,
    area_ranges: dict[str, tuple[float, float]] | None = None,
    backend: str = "auto",
) -> CocoEvaluation:
    """COCOeval of ``results`` against ``coco_gt``.

    Args:
        coco_gt: a pycocotools COCO object (``visdet.data.coco.load_coco``) or the path of an
            annotation JSON.
        results: COCO result dicts (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] and/or
            ``segmentation``, ``score``) or the path of a results JSON; checked by
            ``load_results`` (unknown image or category ids are a ``ResultsFileError``).
        iou_type: "bbox" or "segm".
        image_ids: the images to evaluate; None: every image of the annotation file.
        area_ranges: extra area ranges (name -> (lo, hi) in pixels squared) or new bounds for
            COCO's; reported as ``AP_<name>`` and ``AR_<name>``.
        backend: "pycocotools" (the reference), "faster_coco_eval" or "auto" (see
            ``AUTO_PREFERENCE``).
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    backend = resolve_backend(backend)
    ranges = area_ranges_with_coco(area_ranges)
    gt = prepare_ground_truth(coco_gt)
    dets = load_results(results, gt, iou_type, annotations_name=_name(coco_gt))
    img_ids = evaluated_image_ids(gt, image_ids)
    cat_ids = sorted(gt.getCatIds())
    run = _run_pycocotools if backend == "pycocotools" else _run_faster_coco_eval
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        ev = run(gt, dets, iou_type, img_ids, ranges)
    p = ev.params
    precision = np.asarray(ev.eval["precision"], dtype=np.float64)
    recall = np.asarray(ev.eval["recall"], dtype=np.float64)
    iou_thrs = np.asarray(p.iouThrs, dtype=np.float64)
    max_dets = [int(m) for m in p.maxDets]
    stats = summary_stats(precision, recall, iou_thrs, list(ranges), max_dets)
    seconds = time.perf_counter() - start
    return CocoEvaluation(
        iou_type=iou_type,
        stats=stats,
        per_class=_per_class(gt, dets, img_ids, cat_ids, precision, recall, iou_thrs, max_dets),
        precision=precision,
        recall=recall,
        scores=np.asarray(ev.eval["scores"], dtype=np.float64),
        iou_thresholds=iou_thrs,
        rec_thresholds=np.asarray(p.recThrs, dtype=np.float64),
        category_ids=cat_ids,
        area_ranges=ranges,
        max_dets=max_dets,
        image_ids=img_ids,
        backend=backend,
        seconds=seconds,
    )


def summary_stats(
    precision: np.ndarray,
    recall: np.ndarray,
    iou_thresholds: np.ndarray,
    area_names: list[str],
    max_dets: list[int],
) -> dict[str, float]:
    """The 12 COCO stats (and AP_/AR_ of extra area ranges) computed from ``precision``
    [T, R, K, A, M] and ``recall`` [T, K, A, M] as COCOeval.summarize does."""

    def summarize(ap: bool, iou: float | None = None, area: str = "all", dets: int = 100):
        a, m = area_names.index(area), max_dets.index(dets)
        s = precision[..., a, m] if ap else recall[..., a, m]
        if iou is not None:
            s = s[np.where(iou == iou_thresholds)[0]]
        return _mean_valid(s)

    top = max_dets[2]
    stats = {
        "AP": summarize(True, dets=top),
        "AP50": summarize(True, iou=0.5, dets=top),
        "AP75": summarize(True, iou=0.75, dets=top),
        "APs": summarize(True, area="small", dets=top),
        "APm": summarize(True, area="medium", dets=top),
        "APl": summarize(True, area="large", dets=top),
        "AR1": summarize(False, dets=max_dets[0]),
        "AR10": summarize(False, dets=max_dets[1]),
        "AR100": summarize(False, dets=top),
        "ARs": summarize(False, area="small", dets=top),
        "ARm": summarize(False, area="medium", dets=top),
        "ARl": summarize(False, area="large", dets=top),
    }
    for name in area_names:
        if name not in COCO_AREA_RANGES:
            stats[f"AP_{name}"] = summarize(True, area=name, dets=top)
            stats[f"AR_{name}"] = summarize(False, area=name, dets=top)
    return stats


def _mean_valid(values: np.ndarray) -> float:
    """Mean of the entries > -1; -1.0 where there are none (COCOeval's 'absent')."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def evaluated_image_ids(gt: COCO, image_ids: list[int] | None) -> list[int]:
    """Sorted unique ``image_ids`` (all images of ``gt`` for None), each checked to exist."""
    known = gt.getImgIds()
    if image_ids is None:
        return sorted(known)
    ids = sorted({int(i) for i in image_ids})
    unknown = sorted(set(ids) - set(known))
    if unknown:
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise ValueError(
            f"image_ids: {len(unknown)} ids are not images of the annotation file: "
            f"{', '.join(map(str, unknown[:5]))}{more}"
        )
    if not ids:
        raise ValueError("image_ids is empty: give at least one image, or None for all")
    return ids


def _set_params(ev, img_ids: list[int], ranges: dict[str, tuple[float, float]]) -> None:
    ev.params.imgIds = list(img_ids)
    ev.params.areaRng = [list(v) for v in ranges.values()]
    ev.params.areaRngLbl = list(ranges)


def _run_pycocotools(gt: COCO, dets: list[dict], iou_type: str, img_ids, ranges) -> COCOeval:
    dt = gt.loadRes(dets) if dets else _empty_results(gt, COCO)
    ev = COCOeval(gt, dt, iou_type)
    _set_params(ev, img_ids, ranges)
    ev.evaluate()
    ev.accumulate()
    return ev


def _run_faster_coco_eval(gt: COCO, dets: list[dict], iou_type: str, img_ids, ranges):
    import faster_coco_eval

    fast_gt = faster_coco_eval.COCO()
    # copies of the annotation dicts: faster-coco-eval adds keys (RLEs, flags) to them
    fast_gt.dataset = {**gt.dataset, "annotations": [dict(a) for a in gt.dataset["annotations"]]}
    fast_gt.createIndex()
    ev = faster_coco_eval.COCOeval_faster(fast_gt, fast_gt.loadRes(dets), iou_type)
    _set_params(ev, img_ids, ranges)
    ev.evaluate()
    ev.accumulate()
    return ev


def _empty_results(gt, coco_class):
    """What ``loadRes`` would give for no detections (pycocotools' fails on an empty list)."""
    empty = coco_class()
    empty.dataset = {
        "images": list(gt.dataset["images"]),
        "annotations": [],
        "categories": list(gt.dataset["categories"]),
    }
    empty.createIndex()
    return empty


def _per_class(gt, dets, img_ids, cat_ids, precision, recall, iou_thrs, max_dets) -> list[dict]:
    evaluated = set(img_ids)
    num_gt = Counter(
        a["category_id"]
        for i in img_ids
        for a in gt.imgToAnns.get(i, [])
        if not a.get("iscrowd", 0)
    )
    num_det = Counter(d["category_id"] for d in dets if d["image_id"] in evaluated)
    m = max_dets.index(100) if 100 in max_dets else len(max_dets) - 1
    t50 = np.where(iou_thrs == 0.5)[0]
    rows = []
    for k, cat in enumerate(cat_ids):
        rows.append(
            {
                "category_id": int(cat),
                "name": str(gt.cats[cat].get("name", cat)),
                "AP": _mean_valid(precision[:, :, k, 0, m]),
                "AP50": _mean_valid(precision[t50, :, k, 0, m]),
                "AR100": _mean_valid(recall[:, k, 0, m]),
                "num_gt": int(num_gt[cat]),
                "num_det": int(num_det[cat]),
            }
        )
    return rows


def _name(coco_gt) -> str:
    """The annotation file's name for messages."""
    if isinstance(coco_gt, (str, os.PathLike)):
        return os.path.basename(os.fspath(coco_gt))
    return "the annotations"
