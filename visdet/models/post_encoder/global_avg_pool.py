"""``global_avg_pool``: [B, C, H, W] -> [B, C], the mean over the spatial positions."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from visdet.models.post_encoder.base import PostEncoderModule, check_feature_map, check_map_shape


def global_avg_pool(features: Tensor) -> Tensor:
    """features: [B, C, H, W] -> [B, C]. TorchScript-compatible."""
    check_feature_map(features, "global_avg_pool")
    return features.mean(dim=(2, 3))


class GlobalAvgPool(PostEncoderModule):
    name = "global_avg_pool"

    def apply(self, features: Tensor) -> Tensor:
        return global_avg_pool(features)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        c, _, _ = check_map_shape(shape, self.name)
        return (c,)
