"""The post-encoder contract: a weight-free step that turns an encoder's features into
something else (usually a vector per image).

A module has a ``name`` (its key in the runtime spec), ``apply(features)`` and
``output_shape(shape_without_batch)``; the latter both predicts and checks shapes, so a
pipeline can reject an impossible chain before any tensor exists.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor


def check_feature_map(features: Tensor, who: str) -> None:
    """features must be [B, C, H, W] with every dimension >= 1 (TorchScript-compatible, so
    exported models keep the check)."""
    if features.dim() != 4:
        raise ValueError(who + ": features must be 4-D [B, C, H, W], got " + str(features.shape))
    b, c, h, w = features.shape
    if b < 1 or c < 1 or h < 1 or w < 1:
        raise ValueError(
            who + ": every dimension of features must be >= 1, got " + str(features.shape)
        )


def check_map_shape(shape: Sequence[int], who: str) -> tuple[int, int, int]:
    """shape (without batch) must be (C, H, W) with every entry >= 1."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"{who}: expects a feature map shape (C, H, W), got {list(shape)}")
    if min(shape) < 1:
        raise ValueError(f"{who}: every dimension must be >= 1, got {list(shape)}")
    return shape  # type: ignore[return-value]


class PostEncoderModule:
    """Base class: subclasses set ``name`` and implement ``apply`` and ``output_shape``."""

    name: str = ""

    def apply(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        raise NotImplementedError

    def __call__(self, features: Tensor) -> Tensor:
        return self.apply(features)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(PostEncoderModule):
    """The ``"none"`` key: features pass through unchanged."""

    name = "none"

    def apply(self, features: Tensor) -> Tensor:
        return features

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(s) for s in shape)
