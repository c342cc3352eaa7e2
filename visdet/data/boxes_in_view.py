"""Which boxes survive a geometric augmentation: clipped to the image, kept when large enough.

Boxes are [N, 4] xyxy in continuous pixel coordinates (pixel i spans [i, i + 1]). A box moved
by a transform (its unclipped hull) is clipped to the output image; it is kept when both sides
are at least ``min_size`` pixels and at least ``min_visible`` of its moved area is still inside
(Ultralytics' ``box_candidates`` uses 2 px and 0.1).
"""

from __future__ import annotations

import torch
from torch import Tensor


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Boxes [N, 4] clipped to an image of ``size`` (height, width)."""
    h, w = size
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack([x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)], 1)


def boxes_in_view(
    moved: Tensor, size: tuple[int, int], min_size: float, min_visible: float = 0.0
) -> tuple[Tensor, Tensor]:
    """``(clipped boxes [N, 4], keep [N] bool)`` for boxes ``moved`` [N, 4] (unclipped) in an
    image of ``size`` (height, width); see the module docstring."""
    clipped = clip_boxes(moved, size)
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (w >= min_size) & (h >= min_size)
    if min_visible > 0:
        full = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
        keep &= w * h >= min_visible * full
    return clipped, keep


def mask_boxes(masks: Tensor) -> tuple[Tensor, Tensor]:
    """``(boxes [N, 4] xyxy, nonempty [N] bool)``: the tight box of each mask [N, H, W]
    (pixel i spans [i, i + 1]); an empty mask's box is zeros."""
    n, h, w = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # [N, H], [N, W]
    nonempty = rows.any(dim=1)
    ys = torch.arange(h, device=masks.device, dtype=torch.float32)
    xs = torch.arange(w, device=masks.device, dtype=torch.float32)
    big = float(max(h, w) + 1)

    def span(hit: Tensor, at: Tensor) -> tuple[Tensor, Tensor]:
        lo = torch.where(hit, at, big).amin(dim=1)
        hi = torch.where(hit, at + 1, -big).amax(dim=1)
        return lo, hi

    x1, x2 = span(cols.bool(), xs)
    y1, y2 = span(rows.bool(), ys)
    boxes = torch.stack([x1, y1, x2, y2], dim=1) * nonempty[:, None]
    return boxes.reshape(n, 4), nonempty


def select(target: dict, boxes: Tensor, keep: Tensor) -> dict:
    """``target`` with ``boxes[keep]`` and the matching ``labels`` (and instance ``masks``)."""
    out = {**target, "boxes": boxes[keep], "labels": target["labels"][keep]}
    if "masks" in target:
        out["masks"] = target["masks"][keep]
    return out
