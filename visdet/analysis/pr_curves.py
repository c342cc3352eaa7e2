"""Precision-recall curves from pycocotools' accumulated ``precision`` array.

``pr_curve_points`` computes what is drawn (mean over classes and per class, at IoU 0.5
and averaged over all IoU thresholds); ``plot_pr_curves`` draws it as one PNG: an "all
classes" panel above a grid of small per-class panels.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import numpy as np

from visdet.io.atomic_write import write_bytes_atomic


def _masked_mean(values: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """Mean over ``axis`` of the entries that are not -1 (pycocotools' "absent"); nan where
    every entry is absent."""
    valid = values > -1
    total = np.where(valid, values, 0.0).sum(axis=axis)
    count = valid.sum(axis=axis)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def pr_curve_points(
    precision: np.ndarray,
    rec_thresholds: np.ndarray,
    iou_thresholds: np.ndarray,
    area_index: int = 0,
    max_det_index: int = -1,
) -> dict[str, np.ndarray]:
    """The arrays ``plot_pr_curves`` draws, for one area range and one detection limit.

    ``precision``: [T, R, K, A, M] as pycocotools' ``COCOeval.eval["precision"]`` (-1 where a
    class has no ground truth); ``rec_thresholds``: [R]; ``iou_thresholds``: [T], which must
    contain 0.5. Entries of -1 are left out of every mean; a mean over nothing is nan.

    Returns ``recall`` [R]; ``mean_50`` [R] (mean over classes at IoU 0.5) and
    ``mean_50_95`` [R] (mean over IoU thresholds and classes); ``per_class_50`` and
    ``per_class_50_95`` [K, R]; ``ap`` and ``ap50`` [K], each class's AP as COCOeval
    summarises it (mean over recall points, and IoU thresholds for ``ap``), -1 for a class
    without ground truth.
    """
    p = np.asarray(precision, dtype=np.float64)
    if p.ndim != 5:
        raise ValueError(f"precision: expected shape [T, R, K, A, M], got {list(p.shape)}")
    recall = np.asarray(rec_thresholds, dtype=np.float64).reshape(-1)
    ious = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    t, r, _, a, m = p.shape
    if len(ious) != t or len(recall) != r:
        raise ValueError(
            f"iou_thresholds, rec_thresholds: expected {t} and {r} values for precision of "
            f"shape {list(p.shape)}, got {len(ious)} and {len(recall)}"
        )
    if not -a <= area_index < a or not -m <= max_det_index < m:
        raise ValueError(
            f"area_index, max_det_index: expected indices into {a} area ranges and {m} "
            f"detection limits, got {area_index} and {max_det_index}"
        )
    at_50 = np.flatnonzero(np.isclose(ious, 0.5))
    if not len(at_50):
        raise ValueError(f"iou_thresholds: expected 0.5 among them, got {ious.tolist()}")
    s = p[:, :, :, area_index, max_det_index]  # [T, R, K]
    s50 = s[at_50[0]]  # [R, K]
    ap = _masked_mean(s, (0, 1))
    ap50 = _masked_mean(s50, (0,))
    return {
        "recall": recall,
        "mean_50": _masked_mean(s50, (1,)),
        "mean_50_95": _masked_mean(s, (0, 2)),
        "per_class_50": np.where(s50.T > -1, s50.T, np.nan),
        "per_class_50_95": _masked_mean(s.transpose(2, 1, 0), (2,)),
        "ap": np.where(np.isnan(ap), -1.0, ap),
        "ap50": np.where(np.isnan(ap50), -1.0, ap50),
    }


def plot_pr_curves(
    precision: np.ndarray,
    rec_thresholds: np.ndarray,
    iou_thresholds: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    area_index: int = 0,
    max_det_index: int = -1,
) -> None:
    """One PNG: a panel "all classes" (mean precision over classes at IoU 0.5 and averaged
    over 0.5:0.95, against recall) above a grid of small per-class panels with both curves
    and the class's AP in the title ("no ground truth" for a class without any), laid out
    by ``grid_shape``. Arguments as
    ``pr_curve_points``; ``class_names`` [K]. Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = pr_curve_points(precision, rec_thresholds, iou_thresholds, area_index, max_det_index)
    k = len(pts["ap"])
    if len(class_names) != k:
        raise ValueError(
            f"class_names: expected {k} names (precision has {k} classes), got {len(class_names)}"
        )
    ious = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    rows, cols = grid_shape(k)
    # fixed sizes in inches, so that panels keep their size whatever the number of classes
    cell, top, margin = 1.9, 4.4, 0.3
    width = max(6.5, cols * cell + 2 * margin)
    height = top + rows * cell + margin
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)

    def axes(left: float, bottom: float, w: float, h: float):  # inches from the bottom left
        return fig.add_axes((left / width, bottom / height, w / width, h / height))

    ax = axes((width - 4.8) / 2 + 0.3, height - top + 0.7, 4.8, top - 1.2)
    ax.plot(pts["recall"], pts["mean_50"], label="IoU 0.50")
    ax.plot(pts["recall"], pts["mean_50_95"], label=f"mean, IoU {ious.min():.2f}:{ious.max():.2f}")
    _axes_style(ax, "all classes (mean over classes)", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    font = 8.0 if cols <= 6 else 6.5
    for c in range(k):
        r, col = divmod(c, cols)
        left = (width - cols * cell) / 2 + col * cell + 0.35
        sub = axes(left, height - top - (r + 1) * cell + 0.3, cell - 0.5, cell - 0.8)
        name = _short(str(class_names[c]))
        if pts["ap"][c] < 0:
            _axes_style(sub, f"{name}\nno ground truth", fontsize=font)
            continue
        sub.plot(pts["recall"], pts["per_class_50"][c], linewidth=1)
        sub.plot(pts["recall"], pts["per_class_50_95"][c], linewidth=1)
        title = f"{name}\nAP {pts['ap'][c]:.3f}  AP50 {pts['ap50'][c]:.3f}"
        _axes_style(sub, title, fontsize=font)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    write_bytes_atomic(path, buf.getvalue())


def grid_shape(num_classes: int) -> tuple[int, int]:
    """(rows, cols) of the per-class panels: a little wider than square, at most 10 columns
    (3 classes: 2 x 2; 80 classes: 8 x 10)."""
    if num_classes <= 0:
        return 0, 0
    cols = min(10, num_classes, math.ceil(math.sqrt(1.25 * num_classes)))
    return math.ceil(num_classes / cols), cols


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _axes_style(ax, title: str, fontsize: float) -> None:
    ax.set_title(title, fontsize=fontsize)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.tick_params(labelsize=max(5.0, fontsize - 2.0))
