"""Greedy NMS for exported graphs (``torch.export``: ONNX, AOTInductor): the same decisions as
``visdet.ops.nms`` without Python control flow that depends on the data.

The blocked kernel of ``visdet.ops.nms`` branches on data (how many boxes are left, whether a
block converged), which ``torch.export`` cannot trace. Here the whole score-sorted suppression
matrix is built at once with the same float operations (``_suppression``, the same float32
threshold), so every IoU decision is bit for bit the eager one, and the greedy keep mask is the
fixed point of ``keep = not any(keep[i] and sup[i, j])``, iterated by ``torch.while_loop`` (at
most N + 1 rounds; the fixed point is unique and is the sequential greedy result). Memory is
O(N^2): meant for the few thousand boxes of a detector's post-processing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visdet.ops.nms import _prepare, _suppression


def _greedy_keep(sup: Tensor) -> Tensor:
    """[N] bool greedy keep mask of a strict upper-triangular suppression matrix [N, N]."""
    supf = sup.triu(diagonal=1).to(torch.float32)
    keep = torch.ones(sup.shape[0], dtype=torch.bool, device=sup.device)

    def changed(keep: Tensor, previous: Tensor) -> Tensor:
        # a sum, not any(): ONNX's ReduceMax of no boxes is -inf, which casts to True and
        # would loop forever; a sum of no boxes is 0
        return (keep != previous).sum() > 0

    def step(keep: Tensor, previous: Tensor) -> tuple[Tensor, Tensor]:
        return (keep.to(torch.float32) @ supf) == 0, keep.clone()

    keep, _ = torch.while_loop(changed, step, (step(keep, keep)[0], keep))
    return keep


def graph_nms_sorted(boxes: Tensor, groups: Tensor | None, threshold: float) -> Tensor:
    """Kept positions (int64, ascending) of score-sorted boxes [N, 4]; ``groups`` [N]
    restricts suppression to boxes of the same group."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    sup = _suppression(x1, y1, x2, y2, area, x1, y1, x2, y2, area, threshold)
    if groups is not None:
        sup &= groups[:, None] == groups[None, :]
    return torch.nonzero(_greedy_keep(sup)).squeeze(1)


def graph_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """``visdet.ops.nms`` for exported graphs: kept indices in decreasing score order."""
    sorted_boxes, order, threshold = _prepare(boxes, scores, iou_threshold)
    return order[graph_nms_sorted(sorted_boxes, None, threshold)]


def graph_batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """``visdet.ops.batched_nms`` for exported graphs (a same-category mask)."""
    sorted_boxes, order, threshold = _prepare(boxes, scores, iou_threshold)
    return order[graph_nms_sorted(sorted_boxes, idxs[order], threshold)]
