"""Device-side batch augmentation for detection (run in ``on_after_batch_transfer``).

Training: resize (the detectors' own resize, visdet.ops.resize_image, antialiased when
shrinking; short side drawn from ``train_sizes`` once per batch, long side capped at
``max_size``; drawn from ``(size_seed, step)`` when the caller passes the training step, so
every DDP process resizes its batch of that step to the same size), then Kornia on each
group of same-size images as one batch: horizontal flip, optional random affine, colour
jitter. Boxes follow the geometric transform (the four corners through Kornia's matrix, in
pixel-centre coordinates), are clipped to the image and dropped below ``min_box_size``;
labels stay in sync. Validation: only the deterministic resize to ``val_size``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import kornia.augmentation as K
import torch
from torch import Tensor, nn

from visdet.ops.resize import resize_image


def resize_image_and_boxes(
    image: Tensor, boxes: Tensor, short: int, max_size: int, antialias: bool = True
) -> tuple[Tensor, Tensor]:
    """Resize so the short side is ``short`` (long side at most ``max_size``) with the
    detectors' own resize (visdet.ops.resize_image); boxes are scaled with the image."""
    h, w = image.shape[-2:]
    out = resize_image(image, short, max_size, antialias)
    if out is image:
        return image, boxes
    nh, nw = out.shape[-2:]
    return out, boxes * boxes.new_tensor([nw / w, nh / h, nw / w, nh / h])


def transform_boxes(boxes: Tensor, matrix: Tensor, size: tuple[int, int]) -> Tensor:
    """Axis-aligned hull of boxes [N, 4] (continuous pixel coordinates) mapped by a 3x3
    matrix that acts on pixel-centre coordinates (Kornia's convention), clipped to ``size``."""
    if boxes.numel() == 0:
        return boxes
    x1, y1, x2, y2 = boxes.unbind(1)
    corners = torch.stack([torch.stack(c, 1) for c in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))], 1)
    pts = corners - 0.5
    pts = pts @ matrix[:2, :2].T + matrix[:2, 2]
    pts = pts + 0.5
    out = torch.cat([pts.min(1).values, pts.max(1).values], 1)
    h, w = size
    return torch.stack(
        [
            out[:, 0].clamp(0, w),
            out[:, 1].clamp(0, h),
            out[:, 2].clamp(0, w),
            out[:, 3].clamp(0, h),
        ],
        1,
    )


class DetectionAugment(nn.Module):
    """See the module docstring.

    Args:
        train_sizes: short-side sizes to draw from in training (scale jitter).
        val_size: short side in validation.
        max_size: cap on the long side.
        hflip: probability of a horizontal flip.
        color_jitter: (brightness, contrast, saturation, hue) or None.
        color_jitter_p: probability of colour jitter.
        affine: kwargs of kornia RandomAffine (degrees, translate, scale, shear, p) or None.
        min_box_size: boxes narrower or lower than this after augmentation are dropped.
        size_seed: seeds the per-step draw of the training size (with the step number).
    """

    def __init__(
        self,
        train_sizes: Sequence[int] = (128,),
        val_size: int = 128,
        max_size: int = 1333,
        hflip: float = 0.5,
        color_jitter: Sequence[float] | None = (0.2, 0.2, 0.2, 0.02),
        color_jitter_p: float = 0.8,
        affine: dict | None = None,
        min_box_size: float = 2.0,
        size_seed: int | None = 0,
    ) -> None:
        super().__init__()
        if not train_sizes or any(s < 1 for s in train_sizes) or val_size < 1 or max_size < 1:
            raise ValueError(
                f"aug: sizes must be positive, got train_sizes={list(train_sizes)}, "
                f"val_size={val_size}, max_size={max_size}"
            )
        if not 0 <= hflip <= 1:
            raise ValueError(f"aug.hflip must be a probability in [0, 1], got {hflip}")
        self.train_sizes = tuple(int(s) for s in train_sizes)
        self.val_size = val_size
        self.max_size = max_size
        self.min_box_size = min_box_size
        self.size_seed = size_seed or 0
        self.size_override: int | None = None  # set by e.g. a progressive-resizing schedule
        ops: list[nn.Module] = []
        if hflip > 0:
            ops.append(K.RandomHorizontalFlip(p=hflip))
        if affine:
            ops.append(K.RandomAffine(**dict(affine)))
        if color_jitter is not None:
            if len(color_jitter) != 4:
                raise ValueError(
                    "aug.color_jitter must be (brightness, contrast, saturation, "
                    f"hue), got {list(color_jitter)}"
                )
            ops.append(K.ColorJitter(*color_jitter, p=color_jitter_p))
        self.kornia = K.AugmentationSequential(*ops, data_keys=["input"]) if ops else None

    def train_size(self, step: int | None = None) -> int:
        """The training short side: ``size_override`` when set; else drawn from
        ``train_sizes`` by a generator seeded with (``size_seed``, ``step``), or from
        Python's global generator when no step is given."""
        if self.size_override is not None:
            return self.size_override
        if step is None:
            return random.choice(self.train_sizes)
        return random.Random(f"{self.size_seed}:{step}").choice(self.train_sizes)

    def forward(
        self, images: list[Tensor], targets: list[dict], train: bool, step: int | None = None
    ) -> tuple[list[Tensor], list[dict]]:
        short = self.train_size(step) if train else self.val_size
        out_images, out_targets = [], []
        for img, tgt in zip(images, targets, strict=True):
            img, boxes = resize_image_and_boxes(img, tgt["boxes"], short, self.max_size)
            out_images.append(img)
            out_targets.append({**tgt, "boxes": boxes})
        if train and self.kornia is not None:
            self._augment_groups(out_images, out_targets)
        for img, tgt in zip(out_images, out_targets, strict=True):
            tgt["input_size"] = (int(img.shape[-2]), int(img.shape[-1]))
        return out_images, out_targets

    def _augment_groups(self, images: list[Tensor], targets: list[dict]) -> None:
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape[-2:]), []).append(i)
        for size, idx in groups.items():
            batch = self.kornia(torch.stack([images[i] for i in idx]))
            matrices = self.kornia.transform_matrix
            for j, i in enumerate(idx):
                images[i] = batch[j]
                m = matrices[j] if matrices is not None else torch.eye(3, device=batch.device)
                boxes = transform_boxes(targets[i]["boxes"], m.to(batch.dtype), size)
                keep = ((boxes[:, 2] - boxes[:, 0]) >= self.min_box_size) & (
                    (boxes[:, 3] - boxes[:, 1]) >= self.min_box_size
                )
                targets[i] = {
                    **targets[i],
                    "boxes": boxes[keep],
                    "labels": targets[i]["labels"][keep],
                }
