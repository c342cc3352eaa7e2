"""The one writer of evaluation outputs, used by ``visdet eval`` (a checkpoint or any COCO
results file) and at the end of ``visdet train``: from an annotation set and COCO-format
detections it writes, into one folder,

- ``metrics.json``: per IoU type the 12 COCO stats (``AP``, ``AP50``, ... ``ARl``; -1 where
  COCOeval says absent) and per-class AP / AP50 / AR100 with ground-truth and detection
  counts (visdet.metrics.coco_eval), and the TIDE-style error breakdown (visdet.metrics.tide);
- ``per_class.csv``, ``pr_curves.png`` (IoU 0.5 and 0.5:0.95, overall and per class),
  ``confusion_matrix.png`` + ``.csv`` (IoU and score thresholds of ``EvalSettings``, with a
  background row and column);
- ``report.html``: one self-contained page with the tables, the plots and a gallery of the
  images with the most errors (ground truth beside predictions) when the images are at hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
    for iou_type in settings.iou_types:
        ev = evaluate_coco(
            coco_gt, results, iou_type, area_ranges=settings.area_ranges, backend=settings.backend
        )
        evaluations[iou_type] = ev
        metrics[iou_type] = {**ev.stats, "per_class": ev.per_class}
    bbox = evaluations.get("bbox") or next(iter(evaluations.values()))
    tide = tide_errors(coco_gt, results, pos_thresh=settings.tide_pos, bg_thresh=settings.tide_bg)
    per_image_errors = tide.pop("per_image_errors", {})
    metrics["tide"] = tide
    metrics["num_images"] = len(bbox.image_ids)
    metrics["num_detections"] = len(results)
    metrics["coco_eval_backend"] = bbox.backend
    metrics.update(settings.extra)
    write_text_atomic(out / "metrics.json", dumps_strict(metrics))
    write_per_class_csv(bbox.per_class, out / "per_class.csv")
    names = [c["name"] for c in bbox.per_class]
    plots = {"Precision-recall curves (IoU 0.5 and 0.5:0.95)": out / "pr_curves.png"}
    plot_pr_curves(
        bbox.precision, bbox.rec_thresholds, bbox.iou_thresholds, names, out / "pr_curves.png"
    )
    gt, dets = per_image_boxes(coco_gt, results, bbox.category_ids, bbox.image_ids)
    matrix = confusion_matrix(
        gt, dets, len(names), settings.confusion_iou, settings.confusion_score
    )
    write_confusion_csv(matrix, names, out / "confusion_matrix.csv")
    caption = (
        f"Confusion matrix (IoU {settings.confusion_iou:g}, score >= {settings.confusion_score:g})"
    )
    plot_confusion_matrix(matrix, names, out / "confusion_matrix.png", caption)
    plots[caption] = out / "confusion_matrix.png"
    gallery = None
    if image_dir is not None and settings.gallery:
        gallery = _gallery(
            coco_gt, gt, dets, names, bbox.image_ids, per_image_errors, image_dir,
            settings.gallery, settings.confusion_score,
        )  # fmt: skip
    notes = [f"{len(bbox.image_ids)} images, {len(results)} detections, COCOeval: {bbox.backend}"]
    write_report_html(
        out / "report.html",
        title,
        bbox.stats,
        bbox.per_class,
        tide,
        plots,
        gallery,
        notes,
    )
    log.info("per-class results (%s):\n%s", "bbox", format_per_class_table(bbox.per_class))
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
