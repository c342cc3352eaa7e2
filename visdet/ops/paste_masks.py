"""Pasting instance masks predicted in box frames (M x M) back into the image, with
torchvision's semantics (``paste_masks_in_image``), writing each mask only into its box's
region of one preallocated output.

torchvision's rule: each M x M mask is zero-padded by ``padding`` pixels on every side, its box
widened about the centre by (M + 2 * padding) / M to match, the widened box truncated to
integers (x0, y0, x1, y1); the padded mask is resized bilinearly (``align_corners=False``) to
(y1 - y0 + 1) x (x1 - x0 + 1) pixels (at least 1 x 1) and written at rows y0..y1, columns
x0..x1, clipped to the image. Outside its box a mask is 0.

MMDetection's and Detectron2's rule (``paste_masks_grid_sample``): every pixel centre
(x + 0.5, y + 0.5) is mapped into the box frame, u = (x + 0.5 - x0) / (x1 - x0) * 2 - 1 (and v
alike), and the M x M mask sampled there bilinearly (``grid_sample``, ``align_corners=False``,
zeros outside); binary masks are the values >= the threshold.

Memory: the output [N, H, W] is allocated once (float, or bool with ``threshold``: a quarter
of the memory) and each mask touches only its box's pixels; torchvision allocates one full
image per mask and then stacks them (twice the output).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Boxes [N, 4] xyxy scaled by ``scale`` about their centres."""
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    cx = (boxes[:, 2] + boxes[:, 0]) * 0.5
    cy = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)


def _checked_masks_and_output(
    masks: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float | None
) -> tuple[Tensor, Tensor]:
    """(masks as [N, M, M], the zeroed output [N, h, w]: bool with ``threshold``, else the
    masks' dtype); ValueError for masks not [N, M, M] / [N, 1, M, M] or boxes not [N, 4]."""
    if masks.dim() == 4:
        if masks.shape[1] != 1:
            raise ValueError(f"masks must be [N, M, M] or [N, 1, M, M], got {tuple(masks.shape)}")
        masks = masks[:, 0]
    if masks.dim() != 3 or boxes.shape != (masks.shape[0], 4):
        raise ValueError(
            f"masks [N, M, M] and boxes [N, 4] expected, got {tuple(masks.shape)} and "
            f"{tuple(boxes.shape)}"
        )
    height, width = int(image_size[0]), int(image_size[1])
    dtype = torch.bool if threshold is not None else masks.dtype
    return masks, torch.zeros((masks.shape[0], height, width), dtype=dtype, device=masks.device)


def paste_masks_in_image(
    masks: Tensor, boxes: Tensor, image_size: tuple[int, int], padding: int = 1,
    threshold: float | None = None,
) -> Tensor:  # fmt: skip
    """masks [N, M, M] or [N, 1, M, M] (probabilities in each box's frame), boxes [N, 4] xyxy
    in the pixels of an image of ``image_size`` (h, w) -> [N, h, w]: the pasted masks (the
    masks' dtype), or with ``threshold`` bool masks of the pixels whose pasted value is
    above it."""
    masks, out = _checked_masks_and_output(masks, boxes, image_size, threshold)
    height, width = out.shape[-2:]
    if masks.shape[0] == 0:
        return out
    size = masks.shape[-1]
    padded = F.pad(masks, (padding,) * 4)
    scale = float(size + 2 * padding) / size
    corners = expand_boxes(boxes, scale).to(torch.int64).tolist()
    for i, (x0, y0, x1, y1) in enumerate(corners):
        w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        left, right = max(x0, 0), min(x1 + 1, width)
        top, bottom = max(y0, 0), min(y1 + 1, height)
        if right <= left or bottom <= top:
            continue
        resized = F.interpolate(padded[i][None, None], size=(h, w), mode="bilinear",
                                align_corners=False)[0, 0]  # fmt: skip
        crop = resized[top - y0 : bottom - y0, left - x0 : right - x0]
        out[i, top:bottom, left:right] = crop > threshold if threshold is not None else crop
    return out


def paste_masks_grid_sample(
    masks: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float | None = None
) -> Tensor:
    """masks [N, M, M] or [N, 1, M, M], boxes [N, 4] xyxy -> [N, h, w] pasted with
    MMDetection's / Detectron2's rule (see the module doc); with ``threshold`` bool masks of the
    values >= it. Each mask is sampled only over its box widened by half a mask cell (plus a
    pixel), outside which the sampled value is exactly 0."""
    masks, out = _checked_masks_and_output(masks, boxes, image_size, threshold)
    height, width = out.shape[-2:]
    size_y, size_x = masks.shape[-2:]
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        margin_x, margin_y = (x1 - x0) / (2 * size_x), (y1 - y0) / (2 * size_y)
        left, right = (
            max(math.floor(x0 - margin_x) - 1, 0),
            min(math.ceil(x1 + margin_x) + 1, width),
        )
        top, bottom = (
            max(math.floor(y0 - margin_y) - 1, 0),
            min(math.ceil(y1 + margin_y) + 1, height),
        )
        if right <= left or bottom <= top or x1 <= x0 or y1 <= y0:
            continue
        xs = torch.arange(left, right, device=masks.device, dtype=torch.float32) + 0.5
        ys = torch.arange(top, bottom, device=masks.device, dtype=torch.float32) + 0.5
        u = ((xs - x0) / (x1 - x0) * 2 - 1).to(masks.dtype)
        v = ((ys - y0) / (y1 - y0) * 2 - 1).to(masks.dtype)
        grid = torch.stack(torch.broadcast_tensors(u[None, :], v[:, None]), dim=-1)
        crop = F.grid_sample(masks[i][None, None], grid[None], align_corners=False)[0, 0]
        out[i, top:bottom, left:right] = crop >= threshold if threshold is not None else crop
    return out


def masks_at_size(masks: Tensor, size: tuple[int, int], threshold: float = 0.5) -> Tensor:
    """Pasted masks [N, 1, h, w] or [N, h, w] (probabilities or bool) -> bool [N, H, W] at
    ``size``: resized bilinearly when the size differs, then above ``threshold``."""
    masks = masks[:, 0] if masks.dim() == 4 else masks
    if masks.shape[0] == 0:
        return torch.zeros((0, *size), dtype=torch.bool, device=masks.device)
    if tuple(masks.shape[-2:]) != tuple(size):
        masks = F.interpolate(masks[:, None].float(), size=tuple(size), mode="bilinear")[:, 0]
    return masks > threshold if masks.dtype != torch.bool else masks
