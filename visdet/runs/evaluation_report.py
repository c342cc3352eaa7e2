"""The one writer of evaluation outputs, used by ``visdet eval`` (a checkpoint or any COCO
results file) and at the end of ``visdet train``: from an annotation set and COCO-format
detections it writes, into one folder,

- ``metrics.json``: per IoU type (``bbox``, ``segm``) the 12 COCO stats (``AP``, ``AP50``, ...
  ``ARl``; -1 where COCOeval says absent) and per-class AP / AP50 / AR100 with ground-truth
  and detection counts (visdet.metrics.coco_eval), and the TIDE-style error breakdown
  (visdet.metrics.tide) as ``tide`` (boxes) and ``tide_segm`` (masks);
- ``per_class.csv``, ``pr_curves.png`` (IoU 0.5 and 0.5:0.95, overall and per class), and for
  masks ``per_class_segm.csv``, ``pr_curves_segm.png``; ``confusion_matrix.png`` + ``.csv``
  (box IoU and score thresholds of ``EvalSettings``, with a background row and column);
- ``report.html``: one self-contained page with the tables (boxes, then masks), the plots and
  a gallery of the images with the most errors (ground truth beside predictions; ranked by
  the first IoU type's errors) when the images are at hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from visdet.analysis.confusion import (
    confusion_matrix,
    plot_confusion_matrix,
    write_confusion_csv,
)
from visdet.analysis.gallery import GalleryImage, gallery_entries, worst_images
from visdet.analysis.per_class_table import format_per_class_table, write_per_class_csv
from visdet.analysis.pr_curves import plot_pr_curves
from visdet.analysis.report_html import write_report_html
from visdet.data.image_decode import UnreadableImage, decode_image
from visdet.io.atomic_write import write_text_atomic
from visdet.io.strict_json import dumps_strict
from visdet.metrics.coco_eval import CocoEvaluation, evaluate_coco
from visdet.metrics.tide import tide_errors
from visdet.visualize.draw import to_pil

log = logging.getLogger(__name__)

SUFFIX = {"bbox": "", "segm": "_segm"}  # of the file names and the metrics.json "tide" key
LABEL = {"bbox": " (boxes)", "segm": " (instance masks)"}
HEADING = {"bbox": "boxes (bbox)", "segm": "instance masks (segm)"}


@dataclass(frozen=True)
class EvalSettings:
    """What ``write_evaluation`` computes.

    Attributes:
        iou_types: ``("bbox",)`` and/or ``"segm"``.
        area_ranges: extra or changed COCO area ranges, ``{"tiny": (0, 16**2)}``.
        backend: the COCOeval implementation (visdet.metrics.coco_eval).
        confusion_iou, confusion_score: the confusion matrix's IoU and score thresholds.
        tide_pos, tide_bg: TIDE's foreground and background IoU thresholds.
        gallery: how many of the images with the most errors the report shows.
    """

    iou_types: tuple[str, ...] = ("bbox",)
    area_ranges: dict | None = None
    backend: str = "auto"
    confusion_iou: float = 0.5
    confusion_score: float = 0.3
    tide_pos: float = 0.5
    tide_bg: float = 0.1
    gallery: int = 12
    extra: dict = field(default_factory=dict)  # written into metrics.json as is

    def __post_init__(self) -> None:
        for name in ("confusion_iou", "confusion_score", "tide_pos", "tide_bg"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.gallery < 0:
            raise ValueError(f"report.gallery must be >= 0, got {self.gallery}")
        unknown = set(self.iou_types) - {"bbox", "segm"}
        if unknown or not self.iou_types:
            raise ValueError(f"iou_type must be bbox or segm, got {list(self.iou_types)}")


def write_evaluation(
    coco_gt,
    results: list[dict],
    out_dir: str | Path,
    image_dir: str | Path | None = None,
    settings: EvalSettings | None = None,
    title: str = "visdet evaluation",
    save_detections: bool = False,
) -> dict:
    """Evaluate ``results`` (COCO results dicts, original ids, checked) against ``coco_gt``
    (a pycocotools COCO) and write every output into ``out_dir``; returns what
    ``metrics.json`` holds. ``image_dir`` (the folder ``file_name`` is relative to) enables
    the report's gallery; ``save_detections`` also writes ``results`` as
    ``detections.json``."""
    settings = settings or EvalSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if save_detections:
        write_text_atomic(out / "detections.json", dumps_strict(results))
    metrics: dict = {}
    evaluations: dict[str, CocoEvaluation] = {}
    tides: dict[str, dict] = {}
    for iou_type in settings.iou_types:
        ev = evaluate_coco(
            coco_gt, results, iou_type, area_ranges=settings.area_ranges, backend=settings.backend
        )
        evaluations[iou_type] = ev
        metrics[iou_type] = {**ev.stats, "per_class": ev.per_class}
        tides[iou_type] = tide_errors(
            coco_gt, results, pos_thresh=settings.tide_pos, bg_thresh=settings.tide_bg,
            iou_type=iou_type,
        )  # fmt: skip
    first = settings.iou_types[0]
    main = evaluations[first]
    per_image_errors = tides[first]["per_image_errors"]
    for iou_type, tide in tides.items():
        tide.pop("per_image_errors")
        metrics["tide" + SUFFIX[iou_type]] = tide
    metrics["num_images"] = len(main.image_ids)
    metrics["num_detections"] = len(results)
    metrics["coco_eval_backend"] = main.backend
    metrics.update(settings.extra)
    write_text_atomic(out / "metrics.json", dumps_strict(metrics))
    names = [c["name"] for c in main.per_class]
    plots = {}
    for iou_type, ev in evaluations.items():
        suffix = SUFFIX[iou_type]
        write_per_class_csv(ev.per_class, out / f"per_class{suffix}.csv")
        caption = f"Precision-recall curves{LABEL[iou_type]} (IoU 0.5 and 0.5:0.95)"
        plots[caption] = out / f"pr_curves{suffix}.png"
        plot_pr_curves(ev.precision, ev.rec_thresholds, ev.iou_thresholds, names, plots[caption])
    boxed = with_boxes(results)
    gt, dets = per_image_boxes(coco_gt, boxed, main.category_ids, main.image_ids)
    matrix = confusion_matrix(
        gt, dets, len(names), settings.confusion_iou, settings.confusion_score
    )
    write_confusion_csv(matrix, names, out / "confusion_matrix.csv")
    caption = (
        f"Confusion matrix (box IoU {settings.confusion_iou:g}, "
        f"score >= {settings.confusion_score:g})"
    )
    plot_confusion_matrix(matrix, names, out / "confusion_matrix.png", caption)
    plots[caption] = out / "confusion_matrix.png"
    gallery = None
    if image_dir is not None and settings.gallery:
        gallery = _gallery(
            coco_gt, gt, dets, names, main.image_ids, per_image_errors, image_dir,
            settings.gallery, settings.confusion_score,
        )  # fmt: skip
    notes = [f"{len(main.image_ids)} images, {len(results)} detections, COCOeval: {main.backend}"]
    more = {
        HEADING[t]: (ev.stats, ev.per_class, tides[t])
        for t, ev in evaluations.items() if t != first
    }  # fmt: skip
    write_report_html(
        out / "report.html",
        title if first == "bbox" else f"{title}{LABEL[first]}",
        main.stats,
        main.per_class,
        tides[first],
        plots,
        gallery,
        notes,
        more_results=more,
    )
    for iou_type, ev in evaluations.items():
        log.info("per-class results (%s):\n%s", iou_type, format_per_class_table(ev.per_class))
    return metrics


def per_image_boxes(
    coco_gt, results: list[dict], category_ids: list[int], image_ids: list[int]
) -> tuple[list[dict], list[dict]]:
    """Ground truth and detections per image (in ``image_ids`` order) as numpy arrays:
    boxes [N, 4] xyxy, labels [N] in 0..K-1 (index into ``category_ids``), ``iscrowd`` (gt)
    and ``scores`` (detections); annotations and results of other categories are left out."""
    index = {c: k for k, c in enumerate(category_ids)}
    by_image: dict[int, list[dict]] = {i: [] for i in image_ids}
    for r in results:
        if r["image_id"] in by_image and r["category_id"] in index:
            by_image[r["image_id"]].append(r)
    gt, dets = [], []
    for image_id in image_ids:
        anns = [a for a in coco_gt.imgToAnns.get(image_id, []) if a["category_id"] in index]
        gt.append(
            {
                "boxes": _xyxy([a["bbox"] for a in anns]),
                "labels": np.array([index[a["category_id"]] for a in anns], dtype=np.int64),
                "iscrowd": np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
            }
        )
        rs = by_image[image_id]
        dets.append(
            {
                "boxes": _xyxy([r["bbox"] for r in rs]),
                "labels": np.array([index[r["category_id"]] for r in rs], dtype=np.int64),
                "scores": np.array([r["score"] for r in rs], dtype=np.float64),
            }
        )
    return gt, dets


def with_boxes(results: list[dict]) -> list[dict]:
    """``results`` where each detection has a ``bbox``: one without (a segm results file may
    give only masks) gets its mask's bounding box, as pycocotools' ``loadRes`` does."""
    if all("bbox" in r for r in results):
        return results
    return [
        r if "bbox" in r else {**r, "bbox": mask_utils.toBbox(r["segmentation"]).tolist()}
        for r in results
    ]


def _xyxy(xywh: list) -> np.ndarray:
    boxes = np.asarray(xywh, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def _gallery(coco_gt, gt, dets, names, image_ids, per_image_errors, image_dir, count, score_thresh):
    """Report entries for the ``count`` images with the most errors (unreadable ones are
    left out with a warning)."""
    position = {i: n for n, i in enumerate(image_ids)}
    chosen = [i for i in worst_images(per_image_errors, count) if i in position]
    images, skipped = [], []
    for image_id in chosen:
        info = coco_gt.imgs[image_id]
        path = Path(image_dir) / info["file_name"]
        try:
            tensor = decode_image(path)
        except (UnreadableImage, FileNotFoundError) as e:
            skipped.append(f"{path} ({e})")
            continue
        g, d = gt[position[image_id]], dets[position[image_id]]
        images.append(
            GalleryImage(
                image=to_pil(tensor),
                file_name=info["file_name"],
                gt_boxes=g["boxes"],
                gt_labels=g["labels"],
                gt_names=[names[k] for k in g["labels"]],
                det_boxes=d["boxes"],
                det_labels=d["labels"],
                det_names=[names[k] for k in d["labels"]],
                det_scores=d["scores"],
                errors=int(per_image_errors.get(image_id, 0)),
            )
        )
    if skipped:
        log.warning("report gallery: %d images not readable: %s", len(skipped), skipped[:3])
    return gallery_entries(images, score_thresh=score_thresh)
