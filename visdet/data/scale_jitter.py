"""Large-scale jitter (Ghiasi et al. 2021, "Simple Copy-Paste"; detectron2's ``ResizeScale`` +
``FixedSizeCrop``): scale the image by a random factor, then crop or pad it to a fixed square.

The image is scaled by ``r * min(size / H, size / W)`` with ``r`` uniform in ``scale`` (0.1 to
2.0 in the paper; 1 makes the image just fit the square), aspect ratio kept; a larger result is
cropped at a uniformly random offset to ``size`` x ``size``, a smaller one padded at the bottom
and right with ``fill`` (as detectron2 does). One resize from the decoded image
(``visdet.ops.resize_to``, antialiased when shrinking), then slicing. Boxes are scaled and
shifted with the image and kept by ``visdet.data.boxes_in_view``. Kornia has no such op.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from visdet.data.boxes_in_view import boxes_in_view, select
from visdet.ops.boxes import scale_boxes
from visdet.ops.resize import resize_to


def large_scale_jitter(
    image: Tensor,
    target: dict,
    size: int,
    scale: tuple[float, float],
    fill: float = 114 / 255,
    min_box_size: float = 2.0,
    min_visible: float = 0.0,
) -> tuple[Tensor, dict]:
    """``(image [3, size, size], target)``; the factor and the crop offset are drawn from
    torch's global generator."""
    h, w = int(image.shape[-2]), int(image.shape[-1])
    r, fx, fy = torch.rand(3).tolist()
    factor = (scale[0] + (scale[1] - scale[0]) * r) * min(size / h, size / w)
    nh, nw = max(1, math.floor(h * factor)), max(1, math.floor(w * factor))
    resized = resize_to(image, (nh, nw), antialias=True)
    ox, oy = math.floor(fx * max(0, nw - size)), math.floor(fy * max(0, nh - size))
    crop = resized[:, oy : oy + size, ox : ox + size]
    canvas = image.new_full((image.shape[0], size, size), fill)
    canvas[:, : crop.shape[-2], : crop.shape[-1]] = crop
    boxes = scale_boxes(target["boxes"], nw / w, nh / h)
    moved = boxes - boxes.new_tensor([ox, oy, ox, oy])
    clipped, keep = boxes_in_view(moved, (size, size), min_box_size, min_visible)
    return canvas, select(target, clipped, keep)
