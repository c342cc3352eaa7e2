"""MixUp for detection (Zhang et al. 2019, "Bag of Freebies"; YOLOX; MMDetection's ``MixUp``):
the weighted sum of two images, with the boxes of both.

The partner is scaled to fit inside the image (aspect ratio kept, ``visdet.ops.resize_to``,
antialiased when shrinking) and placed at the top-left of a canvas of the image's size filled
with ``fill``; the result is ``lam * image + (1 - lam) * partner``. ``lam`` is 0.5 (YOLOX) or
drawn from Beta(alpha, alpha) (alpha 1.5 in Bag of Freebies). Losses are not weighted by
``lam``. Kornia's ``RandomMixUpV2`` mixes classification labels only, so it cannot be used.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from visdet.ops.boxes import scale_boxes
from visdet.ops.resize import resize_to


def draw_lambda(alpha: float | None) -> float:
    """0.5 for ``alpha=None``, else a draw from Beta(alpha, alpha)."""
    if alpha is None:
        return 0.5
    a = torch.tensor(float(alpha))
    return float(torch.distributions.Beta(a, a).sample())


def mixup(
    image: Tensor, target: dict, partner: Tensor, partner_target: dict, lam: float, fill: float
) -> tuple[Tensor, dict]:
    """``(image [3, H, W], target)`` mixed with the partner (any size); see the module
    docstring. The target keeps ``target``'s other keys."""
    h, w = int(image.shape[-2]), int(image.shape[-1])
    ph, pw = int(partner.shape[-2]), int(partner.shape[-1])
    scale = min(h / ph, w / pw)
    nh, nw = max(1, min(h, math.floor(ph * scale))), max(1, min(w, math.floor(pw * scale)))
    canvas = image.new_full(image.shape, fill)
    canvas[:, :nh, :nw] = resize_to(partner, (nh, nw), antialias=True)
    boxes = scale_boxes(partner_target["boxes"], nw / pw, nh / ph)
    mixed = lam * image + (1 - lam) * canvas
    return mixed, {
        **target,
        "boxes": torch.cat([target["boxes"], boxes.to(target["boxes"].dtype)]),
        "labels": torch.cat([target["labels"], partner_target["labels"]]),
    }
