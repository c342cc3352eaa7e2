"""The last training samples seen on the device: the partners of mosaic and mixup.

Ultralytics draws mosaic partners from a buffer of recently loaded images; visdet does the
same on the device, after the resize, so the partners cost no extra decoding and work with any
batch size (a batch of 2 still makes mosaics of 4 different images once the buffer has
filled). Draws use torch's global generator (seeded by the run seed).
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor


class SampleBuffer:
    """Up to ``size`` recent ``(image [3, H, W], target)`` pairs, oldest dropped first."""

    def __init__(self, size: int = 16) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"aug buffer_size must be an integer >= 1, got {size!r}")
        self.items: deque[tuple[Tensor, dict]] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self.items)

    def extend(self, images: list[Tensor], targets: list[dict]) -> None:
        for image, target in zip(images, targets, strict=True):
            self.items.append((image, target))

    def draw(self, k: int, exclude: Tensor | None = None) -> list[tuple[Tensor, dict]]:
        """``k`` samples drawn with replacement, never the one whose image is ``exclude``
        (the sample being augmented) unless it is the only one in the buffer."""
        pool = [it for it in self.items if it[0] is not exclude] or list(self.items)
        if not pool:
            raise ValueError("the sample buffer is empty: extend it with the batch first")
        picks = torch.randint(len(pool), (k,)).tolist()
        return [pool[i] for i in picks]

    def clear(self) -> None:
        self.items.clear()
