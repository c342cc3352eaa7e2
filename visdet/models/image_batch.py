"""A batch of images as the detectors' stages pass it on: one padded tensor and where each
image lies inside it."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ImageBatch:
    """``tensor`` [B, 3, Hp, Wp]: the normalised, resized images, zero-padded at the bottom
    and right; ``image_sizes``: each image's (h, w) inside the padding (after resizing)."""

    tensor: Tensor
    image_sizes: list[tuple[int, int]]

    def __post_init__(self) -> None:
        if self.tensor.dim() != 4 or len(self.image_sizes) != self.tensor.shape[0]:
            raise ValueError(
                f"ImageBatch: tensor must be [B, C, H, W] with one size per image, got "
                f"{list(self.tensor.shape)} and {len(self.image_sizes)} sizes"
            )

    @property
    def padded_size(self) -> tuple[int, int]:
        """(Hp, Wp) of the padded batch."""
        return self.tensor.shape[-2], self.tensor.shape[-1]  # symbolic in an exported graph
