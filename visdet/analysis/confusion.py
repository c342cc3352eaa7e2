"""A detection confusion matrix: which true class each confident detection was matched to.

``confusion_matrix`` counts matches over a set of images, ``row_normalised`` turns counts
into per-true-class fractions, ``write_confusion_csv`` and ``plot_confusion_matrix`` write
them out (CSV; a PNG with a counts panel and a row-normalised panel).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence

import numpy as np

from visdet.io.atomic_write import write_bytes_atomic, write_text_atomic

BACKGROUND = "background"


def confusion_matrix(
    gt: Sequence[dict],
    dets: Sequence[dict],
    num_classes: int,
    iou_thresh: float = 0.5,
    score_thresh: float = 0.3,
) -> np.ndarray:
    """Counts of (true class, predicted class) over images; int64 ``[K+1, K+1]``.

    Rows are the true class ``0..K-1`` and a last "background" row; columns are the
    predicted class ``0..K-1`` and a last "background" column.

    ``gt[i]`` and ``dets[i]`` describe the same image:
    ``gt[i] = {"boxes": [G,4] xyxy, "labels": [G] in 0..K-1, "iscrowd": [G] bool (optional)}``,
    ``dets[i] = {"boxes": [D,4] xyxy, "labels": [D] in 0..K-1, "scores": [D]}``.

    Per image:

    - detections with ``score >= score_thresh`` are taken in decreasing score order (equal
      scores keep their input order);
    - each is matched to the not-yet-matched non-crowd ground truth box of any class with
      the highest IoU (the first such box on a tie), if that IoU is ``>= iou_thresh``:
      count ``[gt class, det class]``;
    - an unmatched detection counts ``[background, det class]``, unless its overlap with a
      crowd region, measured as COCO does for crowds (intersection over the detection's
      area), is ``>= iou_thresh``: then it is ignored;
    - each unmatched non-crowd ground truth box counts ``[gt class, background]``.

    ``[background, background]`` is always 0. Areas are ``(x2-x1)*(y2-y1)`` (no +1).
    """
    if not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    if not 0.0 < iou_thresh <= 1.0:
        raise ValueError(f"iou_thresh: expected a value in (0, 1], got {iou_thresh!r}")
    if len(gt) != len(dets):
        raise ValueError(
            f"gt and dets: expected one entry per image in both, got {len(gt)} and {len(dets)}"
        )
    k = int(num_classes)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    for i, (g, d) in enumerate(zip(gt, dets)):
        gt_boxes = _boxes(g, f"gt[{i}]")
        gt_labels = _labels(g, f"gt[{i}]", len(gt_boxes), k)
        crowd = _iscrowd(g, f"gt[{i}]", len(gt_boxes))
        det_boxes = _boxes(d, f"dets[{i}]")
        det_labels = _labels(d, f"dets[{i}]", len(det_boxes), k)
        scores = _scores(d, f"dets[{i}]", len(det_boxes))
        _count_image(matrix, gt_boxes, gt_labels, crowd, det_boxes, det_labels, scores,
                     iou_thresh, score_thresh)  # fmt: skip
    return matrix


def _count_image(
    matrix: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    crowd: np.ndarray,
    det_boxes: np.ndarray,
    det_labels: np.ndarray,
    scores: np.ndarray,
    iou_thresh: float,
    score_thresh: float,
) -> None:
    bg = matrix.shape[0] - 1
    keep = np.flatnonzero(scores >= score_thresh)
    order = keep[np.argsort(-scores[keep], kind="stable")]
    real = np.flatnonzero(~crowd)
    iou = _iou(det_boxes[order], gt_boxes[real])  # [D', G']
    overlap_crowd = _intersection_over_first(det_boxes[order], gt_boxes[crowd])  # [D', C]
    matched = np.zeros(len(real), dtype=bool)
    for row, det in enumerate(order):
        candidates = np.where(matched, -1.0, iou[row])
        best = int(np.argmax(candidates)) if len(real) else -1
        if best >= 0 and candidates[best] >= iou_thresh:
            matched[best] = True
            matrix[gt_labels[real[best]], det_labels[det]] += 1
        elif not (overlap_crowd.shape[1] and overlap_crowd[row].max() >= iou_thresh):
            matrix[bg, det_labels[det]] += 1
    for j in real[~matched]:
        matrix[gt_labels[j], bg] += 1


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N,4], [M,4] -> [N,M] intersection areas."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    return wh[..., 0] * wh[..., 1]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N,4], [M,4] -> [N,M] IoU (0 where the union is empty)."""
    inter = _intersections(a, b)
    union = _areas(a)[:, None] + _areas(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _intersection_over_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N,4], [M,4] -> [N,M] intersection over the area of ``a`` (0 where that area is 0)."""
    inter = _intersections(a, b)
    area = np.broadcast_to(_areas(a)[:, None], inter.shape)
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def _boxes(item: dict, name: str) -> np.ndarray:
    if "boxes" not in item:
        raise ValueError(f"{name}: missing key 'boxes' (expected [N,4] xyxy)")
    boxes = np.asarray(item["boxes"], dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}['boxes']: expected shape [N,4], got {list(boxes.shape)}")
    return boxes


def _labels(item: dict, name: str, n: int, num_classes: int) -> np.ndarray:
    if "labels" not in item:
        raise ValueError(f"{name}: missing key 'labels' (expected [N] ints in 0..K-1)")
    labels = np.asarray(item["labels"]).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"{name}['labels']: expected {n} labels (one per box), got {len(labels)}")
    if n and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name}['labels']: expected integers, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name}['labels']: expected values in 0..{num_classes - 1}, "
            f"got {labels.min()}..{labels.max()}"
        )
    return labels.astype(np.int64)


def _iscrowd(item: dict, name: str, n: int) -> np.ndarray:
    if item.get("iscrowd") is None:
        return np.zeros(n, dtype=bool)
    crowd = np.asarray(item["iscrowd"]).reshape(-1).astype(bool)
    if len(crowd) != n:
        raise ValueError(f"{name}['iscrowd']: expected {n} values (one per box), got {len(crowd)}")
    return crowd


def _scores(item: dict, name: str, n: int) -> np.ndarray:
    if "scores" not in item:
        raise ValueError(f"{name}: missing key 'scores' (expected [D] floats)")
    scores = np.asarray(item["scores"], dtype=np.float64).reshape(-1)
    if len(scores) != n:
        raise ValueError(f"{name}['scores']: expected {n} scores (one per box), got {len(scores)}")
    return scores


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (float64, same shape); a row summing to 0 stays 0."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"matrix: expected a 2-D array, got shape {list(m.shape)}")
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums != 0)


def _check_names(matrix: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"matrix: expected shape [K+1, K+1] with K >= 1, got {list(m.shape)}")
    if len(class_names) != m.shape[0] - 1:
        raise ValueError(
            f"class_names: expected {m.shape[0] - 1} names for a {list(m.shape)} matrix, "
            f"got {len(class_names)}"
        )
    return m


def write_confusion_csv(
    matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike
) -> None:
    """CSV of ``matrix`` [K+1, K+1]: header ``true\\predicted,<names...>,background``, then one
    row per true class and a last background row, each starting with the row's name.
    Written atomically."""
    m = _check_names(matrix, class_names)
    labels = [str(n) for n in class_names] + [BACKGROUND]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["true\\predicted", *labels])
    for label, row in zip(labels, m):
        writer.writerow([label, *(int(v) for v in row)])
    write_text_atomic(path, buf.getvalue())


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "Confusion matrix",
) -> None:
    """A PNG with two panels, counts and row-normalised (``row_normalised``), true class down
    and predicted class across, background last. Tick font size shrinks with the number of
    classes (readable up to ~80); cell values are written when K <= 30. Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = _check_names(matrix, class_names)
    labels = [str(n) for n in class_names] + [BACKGROUND]
    n = len(labels)
    side = min(18.0, 3.0 + 0.16 * n)
    font = float(np.clip(420.0 / n, 5.5, 10.0))
    fig = Figure(figsize=(2 * side + 1.5, side + 1.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title)
    axes = fig.subplots(1, 2)
    panels = (("counts", m.astype(np.float64), None), ("row-normalised", row_normalised(m), 1.0))
    for ax, (name, values, vmax) in zip(axes, panels):
        image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set_title(name)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(n), labels, rotation=90, fontsize=font)
        ax.set_yticks(range(n), labels, fontsize=font)
        if n - 1 <= 30:
            _write_cells(ax, values, name == "counts", font)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    write_bytes_atomic(path, buf.getvalue())


def _write_cells(ax, values: np.ndarray, counts: bool, font: float) -> None:
    top = values.max() if values.size else 0.0
    for (r, c), v in np.ndenumerate(values):
        if v == 0:
            continue
        text = f"{int(v)}" if counts else f"{v:.2f}"
        colour = "white" if top > 0 and v > 0.6 * top else "black"
        ax.text(c, r, text, ha="center", va="center", fontsize=font * 0.8, color=colour)
