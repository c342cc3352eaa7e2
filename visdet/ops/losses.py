"""Detection losses with torchvision's names, arguments and semantics (torchvision.ops):
``sigmoid_focal_loss`` (Lin et al. 2017, RetinaNet) and the box regression losses
``generalized_box_iou_loss`` (Rezatofighi et al. 2019), ``distance_box_iou_loss`` and
``complete_box_iou_loss`` (Zheng et al. 2020).

The box losses take matched pairs: ``boxes1`` and ``boxes2`` of the same shape [..., 4] xyxy
(not all pairs, as ``box_iou``), one loss per pair; integer boxes are computed in float32.
``reduction``: ``"none"`` (the per-element losses), ``"mean"`` (0 for no boxes, keeping the
graph), ``"sum"``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")


def _reduce(loss: Tensor, reduction: str, empty_mean_is_zero: bool) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        if empty_mean_is_zero and loss.numel() == 0:
            return 0.0 * loss.sum()
        return loss.mean()
    return loss.sum()


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")


def sigmoid_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tensor:
    """Focal loss of logits ``inputs`` against binary (or soft) ``targets`` of the same shape:
    ``alpha_t * (1 - p_t) ** gamma * BCE``, ``p_t`` the probability of the target class.
    ``alpha`` in [0, 1] weights positives (negatives 1 - alpha); -1 turns the weighting off
    (torchvision's convention). ``gamma`` >= 0 (0: plain BCE). ``mean`` of no elements is
    NaN, as torch's mean (torchvision's behaviour)."""
    if not (0.0 <= alpha <= 1.0 or alpha == -1):
        raise ValueError(
            f"focal loss alpha must be in [0, 1] (or -1 for no weighting), got {alpha}"
        )
    if gamma < 0:
        raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
    _check_reduction(reduction)
    if inputs.shape != targets.shape:
        raise ValueError(
            f"inputs and targets must have the same shape, got {list(inputs.shape)} and "
            f"{list(targets.shape)}"
        )
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction, empty_mean_is_zero=False)


def _pairs(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    if boxes1.shape != boxes2.shape or boxes1.shape[-1:] != (4,):
        raise ValueError(
            f"boxes1 and boxes2 must both be [..., 4] of the same shape, got "
            f"{list(boxes1.shape)} and {list(boxes2.shape)}"
        )
    up = [b if b.is_floating_point() else b.float() for b in (boxes1, boxes2)]
    return up[0], up[1]


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union of each pair (0 intersection where the boxes do not overlap)."""
    x1, y1, x2, y2 = boxes1.unbind(-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(-1)
    iw = torch.min(x2, x2g) - torch.max(x1, x1g)
    ih = torch.min(y2, y2g) - torch.max(y1, y1g)
    inter = torch.where((iw > 0) & (ih > 0), iw * ih, torch.zeros_like(iw))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def _enclosing(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Width and height of the smallest box enclosing each pair."""
    x1, y1, x2, y2 = boxes1.unbind(-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(-1)
    return torch.max(x2, x2g) - torch.min(x1, x1g), torch.max(y2, y2g) - torch.min(y1, y1g)


def generalized_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7
) -> Tensor:
    """``1 - GIoU`` of each pair: ``1 - IoU + (enclosing - union) / enclosing`` (``eps`` in
    both denominators), in [0, 2]."""
    _check_reduction(reduction)
    boxes1, boxes2 = _pairs(boxes1, boxes2)
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / (union + eps)
    w, h = _enclosing(boxes1, boxes2)
    area_c = w * h
    loss = 1 - (iou - (area_c - union) / (area_c + eps))
    return _reduce(loss, reduction, empty_mean_is_zero=True)


def _diou_and_iou(boxes1: Tensor, boxes2: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / (union + eps)
    w, h = _enclosing(boxes1, boxes2)
    diagonal2 = w**2 + h**2 + eps
    centres = (boxes1[..., :2] + boxes1[..., 2:]) / 2 - (boxes2[..., :2] + boxes2[..., 2:]) / 2
    distance2 = (centres**2).sum(-1)
    return 1 - iou + distance2 / diagonal2, iou


def distance_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7
) -> Tensor:
    """``1 - IoU + d^2 / c^2`` of each pair: ``d`` the distance of the box centres, ``c`` the
    diagonal of the enclosing box (``eps`` added to ``c^2``)."""
    _check_reduction(reduction)
    boxes1, boxes2 = _pairs(boxes1, boxes2)
    loss, _ = _diou_and_iou(boxes1, boxes2, eps)
    return _reduce(loss, reduction, empty_mean_is_zero=True)


def complete_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7
) -> Tensor:
    """The DIoU loss plus ``alpha * v``: ``v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2``
    measures the aspect-ratio difference (``boxes2`` being the target) and ``alpha = v /
    (1 - IoU + v + eps)`` is a constant for the gradient."""
    _check_reduction(reduction)
    boxes1, boxes2 = _pairs(boxes1, boxes2)
    diou, iou = _diou_and_iou(boxes1, boxes2, eps)
    w1, h1 = boxes1[..., 2] - boxes1[..., 0], boxes1[..., 3] - boxes1[..., 1]
    w2, h2 = boxes2[..., 2] - boxes2[..., 0], boxes2[..., 3] - boxes2[..., 1]
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _reduce(diou + alpha * v, reduction, empty_mean_is_zero=True)
