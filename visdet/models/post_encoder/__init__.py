"""Weight-free modules applied to an encoder's features (keys as in the runtime spec)."""

from visdet.models.post_encoder.base import Identity, PostEncoderModule
from visdet.models.post_encoder.global_avg_pool import GlobalAvgPool, global_avg_pool
from visdet.models.post_encoder.pipeline import (
    POST_ENCODERS,
    PostEncoderPipeline,
    build_post_encoder,
)
from visdet.models.post_encoder.spatial_point import SpatialPoint, spatial_point

__all__ = [
    "POST_ENCODERS",
    "GlobalAvgPool",
    "Identity",
    "PostEncoderModule",
    "PostEncoderPipeline",
    "SpatialPoint",
    "build_post_encoder",
    "global_avg_pool",
    "spatial_point",
]
