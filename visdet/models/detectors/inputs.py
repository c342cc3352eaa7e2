"""Validation of detector inputs: images and targets, with messages naming what is wrong."""

from __future__ import annotations

import torch
from torch import Tensor


def as_image_list(images: Tensor | list[Tensor]) -> list[Tensor]:
    """Accept a Tensor[B, 3, H, W] or a list of Tensor[3, H, W] floats in [0, 1]."""
    if isinstance(images, Tensor):
        if images.dim() != 4:
            raise ValueError(
                f"images must be a Tensor[B, 3, H, W] or a list of Tensor[3, H, W], "
                f"got a tensor of shape {list(images.shape)}"
            )
        images = list(images.unbind(0))
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise TypeError(
            f"images must be a non-empty list of Tensor[3, H, W] or a Tensor[B, 3, H, W], "
            f"got {type(images).__name__}"
        )
    for i, img in enumerate(images):
        if not isinstance(img, Tensor):
            raise TypeError(f"images[{i}] must be a Tensor[3, H, W], got {type(img).__name__}")
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"images[{i}] must have shape [3, H, W] (RGB), got {list(img.shape)}")
        if not img.is_floating_point():
            raise TypeError(
                f"images[{i}] must be floating point with values in [0, 1], got dtype {img.dtype}"
            )
        if img.shape[1] < 1 or img.shape[2] < 1:
            raise ValueError(f"images[{i}] has an empty side: {list(img.shape)}")
    return list(images)


def check_targets(
    targets: list[dict[str, Tensor]] | None, num_images: int, num_classes: int
) -> None:
    """Targets (required: a detector in training mode): one dict per image with ``boxes``
    float [N, 4] xyxy (x2 > x1, y2 > y1) and ``labels`` int64 [N] in 1..num_classes."""
    if targets is None:
        raise ValueError("targets are required in training mode (one dict per image)")
    if not isinstance(targets, (list, tuple)):
        raise TypeError(f"targets must be a list of dicts, got {type(targets).__name__}")
    if len(targets) != num_images:
        raise ValueError(
            f"got {num_images} images but {len(targets)} targets; give one target dict per image"
        )
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or "boxes" not in t or "labels" not in t:
            raise ValueError(f"targets[{i}] must be a dict with 'boxes' and 'labels'")
        boxes, labels = t["boxes"], t["labels"]
        if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"targets[{i}]['boxes'] must be a Tensor[N, 4] (x1, y1, x2, y2), got "
                f"{list(getattr(boxes, 'shape', [type(boxes).__name__]))}"
            )
        if not boxes.is_floating_point():
            raise TypeError(f"targets[{i}]['boxes'] must be floating point, got {boxes.dtype}")
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"targets[{i}]['labels'] must be a Tensor[{boxes.shape[0]}] (one per "
                f"box), got {list(getattr(labels, 'shape', [type(labels).__name__]))}"
            )
        if labels.dtype != torch.int64:
            raise TypeError(f"targets[{i}]['labels'] must be int64, got {labels.dtype}")
        if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) > num_classes):
            raise ValueError(
                f"targets[{i}]['labels'] must be in 1..{num_classes} (0 is background),"
                f" got values in [{int(labels.min())}, {int(labels.max())}]"
            )
        if not bool(torch.isfinite(boxes).all()):
            raise ValueError(f"targets[{i}]['boxes'] contains NaN or inf")
        bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if bool(bad.any()):
            j = int(torch.nonzero(bad)[0])
            raise ValueError(
                f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} is degenerate: "
                "boxes need x2 > x1 and y2 > y1"
            )


def check_masks(targets: list[dict[str, Tensor]], images: list[Tensor]) -> None:
    """Instance masks (Mask R-CNN in training mode): each target's ``masks`` a Tensor
    [N, H, W] (0/1, uint8 or bool) with one mask per box, the size of its image."""
    for i, (t, image) in enumerate(zip(targets, images, strict=True)):
        masks = t.get("masks")
        want = (t["boxes"].shape[0], *image.shape[-2:])
        if not isinstance(masks, Tensor) or tuple(masks.shape) != want:
            got = list(getattr(masks, "shape", [type(masks).__name__]))
            raise ValueError(
                f"targets[{i}]['masks'] must be a Tensor{list(want)} (one mask per box, the "
                f"image's size), got {got}"
            )
        if masks.is_floating_point() or masks.is_complex():
            raise TypeError(f"targets[{i}]['masks'] must be uint8 or bool (0/1), got {masks.dtype}")
