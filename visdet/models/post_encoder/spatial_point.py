"""``spatial_point``: the feature vector under one image point, [B, C, H, W] -> [B, C].

A point (x, y) is given in source-image pixels and scaled to the feature map:
``x_f = x * W / src_W``, ``y_f = y * H / src_H``.

- ``nearest``: round half away from zero, clamp to [0, W-1] x [0, H-1], take
  ``features[:, :, y_f, x_f]``.
- ``bilinear``: ``grid_sample(align_corners=True, padding_mode="border")`` at
  ``(2 * x_f / (W - 1) - 1, 2 * y_f / (H - 1) - 1)``; needs H, W >= 2.

Points are one per batch item ``[B, 2]`` or a single point ``[2]`` (or ``[1, 2]``) used for
every item. ``spatial_point`` is TorchScript-compatible so exported models can bake it in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from visdet.models.post_encoder.base import (
    PostEncoderModule,
    check_feature_map,
    check_map_shape,
)

MODES = ("nearest", "bilinear")


def spatial_point(
    features: Tensor, points: Tensor, source_height: int, source_width: int, mode: str = "nearest"
) -> Tensor:
    """features: [B, C, H, W]; points: [B, 2] or [2] as (x, y) source pixels -> [B, C]."""
    check_feature_map(features, "spatial_point")
    b, c, h, w = features.shape
    if source_height <= 0 or source_width <= 0:
        raise ValueError(
            "spatial_point: source size must be > 0, got (height, width) = ("
            + str(source_height) + ", " + str(source_width) + ")"
        )  # fmt: skip
    if mode != "nearest" and mode != "bilinear":
        raise ValueError("spatial_point: mode must be 'nearest' or 'bilinear', got " + mode)
    if points.dim() == 1:
        points = points.unsqueeze(0)
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(
            "spatial_point: points must be [2] or [B, 2] (x, y), got " + str(points.shape)
        )
    if points.shape[0] != b:
        if points.shape[0] != 1:
            raise ValueError(
                "spatial_point: got " + str(points.shape[0]) + " points for a batch of "
                + str(b) + "; give one point per batch item or a single point"
            )  # fmt: skip
        points = points.expand(b, 2)
    xy = points.to(device=features.device, dtype=torch.float64)
    x_f = xy[:, 0] * w / source_width
    y_f = xy[:, 1] * h / source_height
    if mode == "nearest":
        xi = (torch.sign(x_f) * torch.floor(x_f.abs() + 0.5)).clamp(0, w - 1).long()
        yi = (torch.sign(y_f) * torch.floor(y_f.abs() + 0.5)).clamp(0, h - 1).long()
        batch = torch.arange(b, device=features.device)
        return features[batch, :, yi, xi]
    if h < 2 or w < 2:
        raise ValueError(
            "spatial_point: bilinear mode needs a feature map of at least 2x2, got "
            + str(h) + "x" + str(w)
        )  # fmt: skip
    gx = 2.0 * x_f / (w - 1) - 1.0
    gy = 2.0 * y_f / (h - 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(features.dtype).view(b, 1, 1, 2)
    sampled = F.grid_sample(
        features, grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return sampled.view(b, c)


def as_points(point) -> Tensor:
    """(x, y), [2] or [B, 2] -> a float tensor of points."""
    points = torch.as_tensor(point, dtype=torch.float64)
    if points.dim() not in (1, 2) or points.shape[-1] != 2:
        raise ValueError(f"spatial_point: a point is (x, y); got shape {list(points.shape)}")
    return points


class SpatialPoint(PostEncoderModule):
    """Feature vector(s) at a point given in source-image pixels.

    Args:
        interpolation: ``"nearest"`` or ``"bilinear"``.
        source_size: (height, width) of the image the features came from.
        point: (x, y), ``[2]`` or ``[B, 2]``; can be set later with ``set_point``.
    """

    name = "spatial_point"

    def __init__(
        self,
        interpolation: str = "nearest",
        source_size: tuple[int, int] | None = None,
        point=None,
    ) -> None:
        if interpolation not in MODES:
            raise ValueError(
                f"spatial_point: interpolation must be one of {MODES}, got {interpolation!r}"
            )
        self.interpolation = interpolation
        self.source_size: tuple[int, int] | None = None
        self.points: Tensor | None = None
        if source_size is not None or point is not None:
            self.set_point(point, source_size)

    def set_point(self, point, source_size: tuple[int, int] | None = None) -> None:
        """Set the point(s) and, optionally, the source image's (height, width)."""
        if source_size is not None:
            if len(source_size) != 2 or min(int(s) for s in source_size) <= 0:
                raise ValueError(
                    f"spatial_point: source_size must be (height, width) > 0, got {source_size}"
                )
            self.source_size = (int(source_size[0]), int(source_size[1]))
        self.points = None if point is None else as_points(point)

    def apply(self, features: Tensor) -> Tensor:
        if self.points is None or self.source_size is None:
            raise ValueError("spatial_point: call set_point(point, source_size) before apply")
        return spatial_point(features, self.points, *self.source_size, mode=self.interpolation)

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        c, h, w = check_map_shape(shape, self.name)
        if self.interpolation == "bilinear" and (h < 2 or w < 2):
            raise ValueError(
                f"spatial_point: bilinear mode needs a map of at least 2x2, got {h}x{w}"
            )
        return (c,)

    def __repr__(self) -> str:
        return f"SpatialPoint(interpolation={self.interpolation!r}, source_size={self.source_size})"
