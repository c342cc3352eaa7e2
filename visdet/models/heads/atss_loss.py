"""ATSS's adaptive training sample selection and losses, with MMDetection's semantics
(``ATSSAssigner(topk=9)``, ``ATSSHead.loss_by_feat``).

Assignment (``atss_assign``), per ground-truth box: on every pyramid level the ``topk``
anchors whose centres are closest to the box centre are candidates; the box's IoU threshold
is the mean plus the (unbiased) standard deviation of its candidates' IoUs; a candidate is
positive when its IoU reaches the threshold and its centre lies inside the box (by more than
0.01 px); an anchor positive for several boxes takes the one it overlaps most.

Losses (``atss_losses``): ``classification`` sigmoid focal loss (alpha 0.25, gamma 2) over
every class of every anchor / the number of positives (at least 1); ``bbox_regression``
``box_weight`` (2) x GIoU loss of the decoded positive boxes weighted by their centerness
targets / the sum of those targets (at least 1); ``bbox_ctrness`` binary cross-entropy of
the centerness logits against ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of the
anchor centre in its box / the number of positives. No positives: both box terms are 0 (with
gradients).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from visdet.ops import BoxCoder, box_iou, generalized_box_iou_loss, sigmoid_focal_loss


def _centres(boxes: Tensor) -> tuple[Tensor, Tensor]:
    return (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2


def atss_assign(anchors: Tensor, anchors_per_level: Sequence[int], gt_boxes: Tensor,
                topk: int = 9) -> Tensor:  # fmt: skip
    """anchors [N, 4] of all levels in order, gt_boxes [G, 4] -> the matched box index of
    each anchor [N] int64, -1 for background."""
    n = anchors.shape[0]
    if gt_boxes.numel() == 0:
        return torch.full((n,), -1, dtype=torch.int64, device=anchors.device)
    ious = box_iou(anchors, gt_boxes)  # [N, G]
    ax, ay = _centres(anchors)
    gx, gy = _centres(gt_boxes)
    distances = torch.sqrt((ax[:, None] - gx[None]) ** 2 + (ay[:, None] - gy[None]) ** 2)
    candidates, start = [], 0
    for count in anchors_per_level:
        k = min(topk, count)
        _, idx = distances[start : start + count].topk(k, dim=0, largest=False)
        candidates.append(idx + start)
        start += count
    cand = torch.cat(candidates)  # [C, G]
    cand_ious = ious.gather(0, cand)
    threshold = cand_ious.mean(0) + cand_ious.std(0)
    positive = cand_ious >= threshold[None]
    cx, cy = ax[cand], ay[cand]
    inside = torch.stack([cx - gt_boxes[:, 0], cy - gt_boxes[:, 1],
                          gt_boxes[:, 2] - cx, gt_boxes[:, 3] - cy]).amin(0) > 0.01  # fmt: skip
    positive &= inside
    gt_index = torch.arange(gt_boxes.shape[0], device=anchors.device).expand_as(cand)
    best = torch.full_like(ious, -float("inf"))
    rows, cols = cand[positive], gt_index[positive]
    best[rows, cols] = ious[rows, cols]
    best_iou, matched = best.max(dim=1)
    matched[best_iou == -float("inf")] = -1
    return matched


def centerness_targets(anchors: Tensor, gt_boxes: Tensor) -> Tensor:
    """anchors [P, 4], their boxes [P, 4] -> centerness of each anchor centre in its box [P]."""
    cx, cy = _centres(anchors)
    lr = torch.stack([cx - gt_boxes[:, 0], gt_boxes[:, 2] - cx], 1)
    tb = torch.stack([cy - gt_boxes[:, 1], gt_boxes[:, 3] - cy], 1)
    return torch.sqrt((lr.amin(1) / lr.amax(1)) * (tb.amin(1) / tb.amax(1)))


def atss_losses(
    outputs: dict[str, Tensor], anchors: Tensor, targets: Sequence[dict[str, Tensor]],
    matched_idxs: Sequence[Tensor], coder: BoxCoder, alpha: float = 0.25, gamma: float = 2.0,
    box_weight: float = 2.0,
) -> dict[str, Tensor]:  # fmt: skip
    """``{"classification", "bbox_regression", "bbox_ctrness"}`` for head outputs [B, N, *],
    anchors [N, 4] (shared by the images), targets (labels 1..K) and ``atss_assign``'s result
    per image."""
    logits, deltas = outputs["cls_logits"], outputs["bbox_regression"]
    ctrness = outputs["bbox_ctrness"].squeeze(2)
    target = torch.zeros_like(logits)
    pos_deltas, pos_ctrness, pos_anchors, pos_boxes = [], [], [], []
    for i, (t, matched) in enumerate(zip(targets, matched_idxs, strict=True)):
        fg = torch.where(matched >= 0)[0]
        target[i, fg, t["labels"][matched[fg]] - 1] = 1.0
        pos_deltas.append(deltas[i, fg])
        pos_ctrness.append(ctrness[i, fg])
        pos_anchors.append(anchors[fg])
        pos_boxes.append(t["boxes"][matched[fg]])
    pos_deltas, pos_ctrness = torch.cat(pos_deltas), torch.cat(pos_ctrness)
    pos_anchors, pos_boxes = torch.cat(pos_anchors), torch.cat(pos_boxes)
    positives = max(1, pos_deltas.shape[0])
    cls = sigmoid_focal_loss(logits, target, alpha, gamma, reduction="sum") / positives
    if pos_deltas.shape[0] == 0:
        zero = deltas.sum() * 0 + ctrness.sum() * 0
        return {"classification": cls, "bbox_regression": zero, "bbox_ctrness": zero}
    ctr_target = centerness_targets(pos_anchors, pos_boxes)
    giou = generalized_box_iou_loss(coder.decode(pos_deltas, pos_anchors), pos_boxes)
    box = box_weight * (giou * ctr_target).sum() / ctr_target.sum().clamp(min=1.0)
    ctr = F.binary_cross_entropy_with_logits(pos_ctrness, ctr_target, reduction="sum")
    return {"classification": cls, "bbox_regression": box, "bbox_ctrness": ctr / positives}
