"""FCOS's location assignment and training losses with torchvision's semantics
(``FCOS.compute_loss`` and ``FCOSHead.compute_loss``).

Assignment (``match_points``): each anchor point (the centre of a stride-sized anchor) is a
candidate for a ground-truth box when it lies inside the box, within
``center_sampling_radius`` x the anchor size of the box centre (centre sampling, per axis), and
the box's largest side distance from the point is within the level's range
(``4 x size``, ``8 x size``], the first level starting at 0 and the last unbounded; among
several candidates the smallest box (area) wins.

Losses, each summed over the batch and divided by the batch's foreground count (at least 1):
``classification`` sigmoid focal loss (alpha 0.25, gamma 2) over every class of every point;
``bbox_regression`` GIoU loss of the decoded foreground boxes; ``bbox_ctrness`` binary
cross-entropy of the centerness logits against ``sqrt(min(l, r) / max(l, r) * min(t, b) /
max(t, b))`` of the foreground targets. ``centerness_weighted=True`` is MMDetection's box
loss instead: each foreground GIoU loss weighted by its centerness target, divided by their sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from visdet.ops import BoxLinearCoder, generalized_box_iou_loss, sigmoid_focal_loss


def match_points(
    anchors: Tensor, gt_boxes: Tensor, anchors_per_level: Sequence[int],
    center_sampling_radius: float = 1.5,
) -> Tensor:  # fmt: skip
    """anchors [N, 4] of all levels (in order), gt_boxes [G, 4] -> the matched box index of
    each anchor [N] int64, -1 where none."""
    if gt_boxes.numel() == 0:
        return torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
    gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    sizes = anchors[:, 2] - anchors[:, 0]
    offset = (centers[:, None, :] - gt_centers[None, :, :]).abs_().max(dim=2).values
    match = offset < center_sampling_radius * sizes[:, None]
    x, y = centers.unsqueeze(dim=2).unbind(dim=1)
    x0, y0, x1, y1 = gt_boxes.unsqueeze(dim=0).unbind(dim=2)
    distances = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)  # [N, G, 4]
    match &= distances.min(dim=2).values > 0
    lower = sizes * 4
    lower[: anchors_per_level[0]] = 0
    upper = sizes * 8
    upper[-anchors_per_level[-1] :] = float("inf")
    largest = distances.max(dim=2).values
    match &= (largest > lower[:, None]) & (largest < upper[:, None])
    areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    # the smallest matching box: torchvision's 1e8 - area ranking, float32 match mask
    ranked = match.to(torch.float32) * (1e8 - areas[None, :])
    best, matched = ranked.max(dim=1)
    matched[best < 1e-5] = -1
    return matched


def fcos_losses(
    outputs: dict[str, Tensor], anchors: Tensor, targets: Sequence[dict[str, Tensor]],
    matched_idxs: Sequence[Tensor], coder: BoxLinearCoder, alpha: float = 0.25,
    gamma: float = 2.0, centerness_weighted: bool = False,
) -> dict[str, Tensor]:  # fmt: skip
    """``{"classification", "bbox_regression", "bbox_ctrness"}`` for head outputs
    (``cls_logits`` [B, N, K], ``bbox_regression`` [B, N, 4], ``bbox_ctrness`` [B, N, 1]),
    anchors [N, 4] (shared by the images), targets (labels 1..K) and ``match_points``'
    result per image."""
    logits = outputs["cls_logits"]
    gt_labels, gt_boxes = [], []
    for t, matched in zip(targets, matched_idxs, strict=True):
        if t["labels"].numel() == 0:
            labels = t["labels"].new_zeros(matched.shape[0])
            boxes = t["boxes"].new_zeros(matched.shape[0], 4)
        else:
            labels = t["labels"][matched.clip(min=0)]
            boxes = t["boxes"][matched.clip(min=0)]
        labels = labels.clone()
        labels[matched < 0] = 0  # background
        gt_labels.append(labels)
        gt_boxes.append(boxes)
    labels, boxes = torch.stack(gt_labels), torch.stack(gt_boxes)
    all_anchors = anchors.expand(len(targets), -1, -1)
    foreground = labels > 0
    count = max(1, int(foreground.sum()))
    target = torch.zeros_like(logits)
    target[foreground, labels[foreground] - 1] = 1.0
    cls = sigmoid_focal_loss(logits, target, alpha, gamma, reduction="sum")
    encoded = coder.encode(all_anchors, boxes)
    if encoded.numel() == 0:
        ctr_target = encoded.new_zeros(encoded.shape[:-1])
    else:
        lr, tb = encoded[..., [0, 2]], encoded[..., [1, 3]]
        ctr_target = torch.sqrt(
            (lr.min(dim=-1).values / lr.max(dim=-1).values)
            * (tb.min(dim=-1).values / tb.max(dim=-1).values)
        )
    predicted = coder.decode(outputs["bbox_regression"], all_anchors)
    box = generalized_box_iou_loss(predicted[foreground], boxes[foreground], reduction="none")
    if centerness_weighted:
        weights = ctr_target[foreground]
        box = (box * weights).sum() / weights.sum().clamp(min=1e-6)
    else:
        box = box.sum() / count
    ctr = F.binary_cross_entropy_with_logits(
        outputs["bbox_ctrness"].squeeze(dim=2)[foreground], ctr_target[foreground], reduction="sum"
    )
    return {"classification": cls / count, "bbox_regression": box,
            "bbox_ctrness": ctr / count}  # fmt: skip
