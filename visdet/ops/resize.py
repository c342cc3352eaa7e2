"""The one image resize of visdet: the data augmentation, the detector's own input transform
and exported detectors all size images with these two functions, so training, standalone and
exported preprocessing cannot differ (``resize_to``, the same bilinear resize to a given size,
serves the augmentations that scale to a drawn size)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def resized_size(height: int, width: int, min_size: float, max_size: float) -> tuple[int, int]:
    """(h, w) after scaling so the short side is ``min_size`` and the long side at most
    ``max_size``: torchvision's rule (``GeneralizedRCNNTransform``): the scale
    ``min(min_size / short, max_size / long)`` in float32, each side ``floor(side * scale)``
    (at least 1)."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be >= 1, got {height}x{width}")
    short = torch.tensor(min(height, width), dtype=torch.float32)
    long = torch.tensor(max(height, width), dtype=torch.float32)
    scale = torch.minimum(min_size / short, max_size / long).item()
    return max(1, math.floor(height * scale)), max(1, math.floor(width * scale))


def resize_image(
    image: Tensor, min_size: float, max_size: float, antialias: bool = False
) -> Tensor:
    """image [C, H, W] resized bilinearly (``align_corners=False``) to ``resized_size``;
    ``antialias`` low-pass filters when shrinking. Returns ``image`` itself when the size
    does not change."""
    h, w = int(image.shape[-2]), int(image.shape[-1])
    return resize_to(image, resized_size(h, w, min_size, max_size), antialias)


def resize_to(image: Tensor, size: tuple[int, int], antialias: bool = False) -> Tensor:
    """image [C, H, W] resized bilinearly (``align_corners=False``) to ``size`` (h, w);
    ``antialias`` low-pass filters when shrinking. Returns ``image`` itself when the size
    does not change."""
    h, w = int(image.shape[-2]), int(image.shape[-1])
    size = (int(size[0]), int(size[1]))
    if size == (h, w):
        return image
    shrinks = size[0] < h or size[1] < w
    return F.interpolate(
        image[None],
        size=size,
        mode="bilinear",
        align_corners=False,
        antialias=antialias and shrinks,
    )[0]


def resize_masks(masks: Tensor, size) -> Tensor:
    """Instance masks [N, H, W] (0/1) resized to ``size`` (h, w) by nearest neighbour, as
    uint8 (torchvision's ``_resize_image_and_masks``); unchanged when already that size."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size), dtype=torch.uint8)
    return F.interpolate(masks[:, None].float(), size=tuple(size))[:, 0].byte()
