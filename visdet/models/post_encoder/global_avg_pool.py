"""``global_avg_pool``: [B, C, H, W] -> [B, C], the mean over the spatial positions."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from visdet.models.post_encoder.base import PostEncoderModule, check_map_shape


def global_avg_pool(features: Tensor) -> Tensor:
    """features: [B, C, H, W] -> [B, C]. TorchScript-compatible."""
    if features.dim() != 4:
        raise ValueError(
            "global_avg_pool: features must be 4-D [B, C, H, W], got " + str(features.shape)
        )
    b, c, h, w = features.shape
    if b < 1 or c < 1 or h < 1 or w < 1:
        raise ValueError(
            "global_avg_pool: every dimension of features must be >= 1, got " + str(features.shape)
        )
    return features.mean(dim=(2, 3))


class GlobalAvgPool(PostEncoderModule):
    name = "global_avg_pool"

    def apply(self, features: Tensor) -> Tensor:
        return global_avg_pool(features)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        c, _, _ = check_map_shape(shape, self.name)
        return (c,)
