"""RetinaNet's training losses with torchvision's semantics (``RetinaNet.compute_loss``).

Anchors are matched to ground truth by IoU (``Matcher(0.5, 0.4, allow_low_quality_matches
=True)`` by default: foreground >= 0.5, background < 0.4, in between ignored; an image without
boxes has only background). Per image, normalised by its number of foreground anchors (at
least 1), then averaged over the images:

- ``classification``: sigmoid focal loss (alpha 0.25, gamma 2) summed over every class of
  every non-ignored anchor; the target is 1 in the column of the matched box's class (label
  ``k`` is column ``k - 1``).
- ``bbox_regression``: over the foreground anchors, ``l1`` (torchvision v1: L1 between the
  predicted deltas and the encoded target boxes) or ``giou`` / ``diou`` / ``ciou`` /
  ``smooth_l1`` (v2 uses ``giou``: the decoded boxes against the target boxes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from visdet.ops import (
    BoxCoder,
    Matcher,
    box_iou,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

BOX_LOSSES = ("l1", "smooth_l1", "giou", "diou", "ciou")
_IOU_LOSSES = {
    "giou": generalized_box_iou_loss,
    "diou": distance_box_iou_loss,
    "ciou": complete_box_iou_loss,
}


def match_anchors(
    anchors: Sequence[Tensor], gt_boxes: Sequence[Tensor], matcher: Matcher
) -> list[Tensor]:
    """Per image: the matched box index of each anchor, or -1 (background) / -2 (ignored)."""
    out = []
    for a, g in zip(anchors, gt_boxes, strict=True):
        if g.numel() == 0:
            out.append(torch.full((a.shape[0],), -1, dtype=torch.int64, device=a.device))
        else:
            out.append(matcher(box_iou(g, a)))
    return out


def box_loss(kind: str, coder: BoxCoder, anchors: Tensor, gt: Tensor, deltas: Tensor,
             beta: float = 1.0, eps: float = 1e-7) -> Tensor:  # fmt: skip
    """The summed regression loss of foreground anchors ``anchors`` [F, 4] with predicted
    ``deltas`` [F, 4] against their boxes ``gt`` [F, 4]."""
    if kind == "l1":
        return F.l1_loss(deltas, coder.encode(gt, anchors), reduction="sum")
    if kind == "smooth_l1":
        return F.smooth_l1_loss(deltas, coder.encode(gt, anchors), reduction="sum", beta=beta)
    if kind in _IOU_LOSSES:
        return _IOU_LOSSES[kind](coder.decode(deltas, anchors), gt, reduction="sum", eps=eps)
    raise ValueError(f"box loss must be one of {list(BOX_LOSSES)}, got {kind!r}")


def retinanet_losses(
    cls_logits: Tensor,
    bbox_regression: Tensor,
    anchors: Sequence[Tensor],
    targets: Sequence[dict[str, Tensor]],
    matched_idxs: Sequence[Tensor],
    coder: BoxCoder,
    box_loss_kind: str = "l1",
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> dict[str, Tensor]:
    """``{"classification", "bbox_regression"}`` for head outputs [B, N, K] / [B, N, 4],
    anchors per image [N, 4], targets (``boxes`` [G, 4], ``labels`` [G] in 1..K) and
    ``match_anchors``' result."""
    cls_losses, box_losses = [], []
    for logits, deltas, a, t, matched in zip(cls_logits, bbox_regression, anchors, targets,
                                             matched_idxs, strict=True):  # fmt: skip
        foreground = torch.where(matched >= 0)[0]
        count = max(1, foreground.numel())
        target = torch.zeros_like(logits)
        target[foreground, t["labels"][matched[foreground]] - 1] = 1.0
        valid = matched != Matcher.BETWEEN_THRESHOLDS
        focal = sigmoid_focal_loss(logits[valid], target[valid], alpha, gamma, reduction="sum")
        cls_losses.append(focal / count)
        gt = t["boxes"][matched[foreground]]
        box_losses.append(
            box_loss(box_loss_kind, coder, a[foreground], gt, deltas[foreground]) / count
        )
    images = max(1, len(targets))
    return {
        "classification": torch.stack(cls_losses).sum() / images,
        "bbox_regression": torch.stack(box_losses).sum() / images,
    }
