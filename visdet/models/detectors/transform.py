"""Detector input transform: normalise, resize, batch with padding; map boxes back."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visdet.models.image_batch import ImageBatch
from visdet.ops.boxes import scale_boxes
from visdet.ops.resize import resize_image, resize_masks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _ratio(new: int, old: int) -> float:
    """new / old rounded to float32, as torchvision's ``resize_boxes`` computes the target
    boxes' scale (so that anchor matching on the scaled boxes is the same, ties included)."""
    return float(torch.tensor(new, dtype=torch.float32) / torch.tensor(old, dtype=torch.float32))


def _in_graph_capture() -> bool:
    """True while a graph is exported, traced or scripted (the layout is left alone)."""
    return torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.jit.is_scripting()


class DetectionTransform(nn.Module):
    """Images [3, H, W] in [0, 1] -> one normalised, padded batch [B, 3, Hp, Wp].

    Each image is resized by ``visdet.ops.resize_image`` (torchvision's rule: bilinear, scale
    ``min(min_size / short side, max_size / long side)``, no antialiasing unless
    ``antialias``; ``min_size=None``: no resizing, when the data pipeline already sized the
    images);
    in training ``min_size`` may list several sizes, one chosen at random per image (the last
    is used in eval). The batch is zero-padded at the bottom/right to a multiple of
    ``size_divisible``. Target boxes are scaled with their image (instance ``masks``
    [N, H, W] are resized with it, nearest neighbour); ``postprocess`` maps
    predicted boxes back to each input image's pixels.

    ``channel_order="bgr"`` reverses the channels before normalising, for networks trained on
    BGR images (caffe weights; MMDetection's ``bgr_to_rgb=False``); ``image_mean`` and
    ``image_std`` are then in B, G, R order. Inputs are always RGB.
    """

    def __init__(
        self,
        min_size: int | Sequence[int] | None = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        size_divisible: int = 32,
        antialias: bool = False,
        channel_order: str = "rgb",
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        self.channel_order = channel_order
        self.channels_last = channels_last
        self.resize_images = min_size is not None
        min_size = 1 if min_size is None else min_size
        self.min_size = (min_size,) if isinstance(min_size, int) else tuple(min_size)
        if not self.min_size or any(s < 1 for s in self.min_size) or max_size < 1:
            raise ValueError(f"min_size and max_size must be positive, got {min_size}, {max_size}")
        if len(image_mean) != 3 or len(image_std) != 3 or any(s <= 0 for s in image_std):
            raise ValueError(
                f"image_mean/image_std need 3 values (std > 0), got {image_mean}, {image_std}"
            )
        self.max_size = max_size
        self.size_divisible = size_divisible
        self.antialias = antialias
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)

    def _target_min_size(self) -> int:
        return random.choice(self.min_size) if self.training else self.min_size[-1]

    def resize(self, image: Tensor) -> Tensor:
        if not self.resize_images:
            return image
        return resize_image(image, self._target_min_size(), self.max_size, self.antialias)

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        """Returns the padded batch (with each image's resized (h, w)) and scaled targets."""
        resized, sizes, out_targets = [], [], [] if targets is not None else None
        for i, img in enumerate(images):
            mean = torch.as_tensor(self.image_mean, dtype=img.dtype, device=img.device)
            std = torch.as_tensor(self.image_std, dtype=img.dtype, device=img.device)
            if self.channel_order == "bgr":
                img = img.flip(0)
            img = (img - mean[:, None, None]) / std[:, None, None]
            new = self.resize(img)
            resized.append(new)
            sizes.append((new.shape[-2], new.shape[-1]))  # symbolic in an exported graph
            if targets is not None:
                t = dict(targets[i])
                rx, ry = _ratio(new.shape[-1], img.shape[-1]), _ratio(new.shape[-2], img.shape[-2])
                t["boxes"] = scale_boxes(t["boxes"], rx, ry)
                if "masks" in t:
                    t["masks"] = resize_masks(t["masks"], new.shape[-2:])
                out_targets.append(t)
        d = self.size_divisible
        # integer ceil with non-negative operands only: exact, traceable, and the same in
        # ONNX (whose integer division truncates instead of flooring)
        ph = (max(s[0] for s in sizes) + d - 1) // d * d
        pw = (max(s[1] for s in sizes) + d - 1) // d * d
        # zero padding at the bottom and right (F.pad keeps sizes symbolic when exported)
        batch = torch.stack(
            [F.pad(img, (0, pw - img.shape[2], 0, ph - img.shape[1])) for img in resized]
        )
        if self.channels_last and not torch.is_grad_enabled() and not _in_graph_capture():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return ImageBatch(batch, sizes), out_targets

    @staticmethod
    def postprocess(
        results: list[dict[str, Tensor]],
        resized_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Scale each result's boxes from the resized image to the original image."""
        for res, (rh, rw), (oh, ow) in zip(results, resized_sizes, original_sizes, strict=True):
            boxes = res["boxes"]
            sx = torch.full((), ow / rw, dtype=boxes.dtype, device=boxes.device)
            sy = torch.full((), oh / rh, dtype=boxes.dtype, device=boxes.device)
            res["boxes"] = boxes * torch.stack([sx, sy, sx, sy])
        return results
