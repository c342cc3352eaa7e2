"""Post-encoder modules chained in order, with the shape checked between steps."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from visdet.models.post_encoder.base import Identity, PostEncoderModule
from visdet.models.post_encoder.global_avg_pool import GlobalAvgPool
from visdet.models.post_encoder.spatial_point import SpatialPoint

# The keys are part of the runtime-spec file format (``post_encoder[].module``).
POST_ENCODERS: dict[str, type[PostEncoderModule]] = {
    "none": Identity,
    "global_avg_pool": GlobalAvgPool,
    "spatial_point": SpatialPoint,
}


def build_post_encoder(key: str, interpolation: str = "nearest") -> PostEncoderModule:
    """The module for a spec key; ``interpolation`` is used by ``spatial_point`` only."""
    if key not in POST_ENCODERS:
        raise ValueError(
            f"unknown post-encoder module {key!r}; expected one of {list(POST_ENCODERS)}"
        )
    if key == "spatial_point":
        return SpatialPoint(interpolation=interpolation)
    return POST_ENCODERS[key]()


class PostEncoderPipeline(PostEncoderModule):
    """Apply ``modules`` in order; an empty pipeline is the identity."""

    name = "pipeline"

    def __init__(self, modules: Sequence[PostEncoderModule] = ()) -> None:
        for i, m in enumerate(modules):
            if not isinstance(m, PostEncoderModule):
                raise TypeError(
                    f"pipeline step {i} must be a PostEncoderModule, got {type(m).__name__}"
                )
        self.modules = list(modules)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The shape after every step; raises naming the first step that cannot take its input."""
        current = tuple(int(s) for s in shape)
        for i, m in enumerate(self.modules):
            try:
                current = m.output_shape(current)
            except ValueError as e:
                raise ValueError(
                    f"post-encoder step {i} ({m.name}) gets shape {list(current)}: {e}"
                ) from None
        return current

    def apply(self, features: Tensor) -> Tensor:
        expected = self.output_shape(features.shape[1:])
        out = features
        for m in self.modules:
            out = m.apply(out)
        if tuple(out.shape[1:]) != expected:  # a module broke its own output_shape contract
            raise RuntimeError(
                f"post-encoder pipeline produced {list(out.shape[1:])}, expected {list(expected)}"
            )
        return out

    def __len__(self) -> int:
        return len(self.modules)

    def __repr__(self) -> str:
        return f"PostEncoderPipeline({self.modules})"
