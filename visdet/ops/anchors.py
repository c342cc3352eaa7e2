"""Anchor generation: sizes x aspect ratios per feature level.

The anchor order matches torchvision's ``AnchorGenerator``: per level, locations in row-major
order (y, then x), and at each location the cell anchors with the aspect ratio varying
slowest and the size fastest. An RPN head trained with torchvision therefore maps one to one.
MMDetection's ``AnchorGenerator`` (scales x stride, center offset 0) uses the same order but
neither rounds the cell anchors nor infers strides from the feature size: set
``round_anchors=False`` and ``strides`` to match it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def cell_anchors(
    sizes: Sequence[float],
    aspect_ratios: Sequence[float],
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
    round_anchors: bool = True,
) -> Tensor:
    """Zero-centred anchors of one level, [len(aspect_ratios) * len(sizes), 4] xyxy.

    An anchor of size s and ratio r (height / width) has width s / sqrt(r) and height
    s * sqrt(r), so its area is s**2; corners are rounded to integers as in torchvision
    (``round_anchors=False`` keeps them exact, as MMDetection does).
    """
    scales = torch.as_tensor(sizes, dtype=dtype, device=device)
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    anchors = torch.stack([-ws, -hs, ws, hs], dim=1) / 2
    return anchors.round() if round_anchors else anchors


class AnchorGenerator(nn.Module):
    """Anchors for every location of every feature level.

    Args:
        sizes: per level, the anchor sizes (square-root of the area) in image pixels.
        aspect_ratios: per level, the height/width ratios; a single sequence is used for all.
        round_anchors: round cell-anchor corners to integers (torchvision; MMDetection does not).
        strides: per level, a fixed stride in pixels (MMDetection); None infers each level's
            stride as ``image_size // feature_size`` (torchvision).
        offset: anchor centres at ``(i + offset) * stride`` for cell i: 0 (torchvision's and
            MMDetection's anchors) or 0.5 (MMDetection's FCOS points, cell centres).
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[float]] = ((32,), (64,), (128,), (256,), (512,)),
        aspect_ratios: Sequence[Sequence[float]] | Sequence[float] = (0.5, 1.0, 2.0),
        round_anchors: bool = True,
        strides: Sequence[int] | None = None,
        offset: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"offset must be in [0, 1) (a fraction of the stride), got {offset}")
        sizes = [tuple(s) for s in sizes]
        if len(aspect_ratios) > 0 and not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = [tuple(aspect_ratios)] * len(sizes)  # type: ignore[list-item]
        aspect_ratios = [tuple(a) for a in aspect_ratios]  # type: ignore[union-attr]
        if len(sizes) != len(aspect_ratios):
            raise ValueError(
                f"sizes and aspect_ratios need one entry per level, got {len(sizes)} and "
                f"{len(aspect_ratios)}"
            )
        for name, groups in (("sizes", sizes), ("aspect_ratios", aspect_ratios)):
            if any(len(g) == 0 or any(v <= 0 for v in g) for g in groups):
                raise ValueError(
                    f"{name} must hold non-empty groups of positive numbers, got {groups}"
                )
        if strides is not None and (
            len(strides) != len(sizes) or any(int(v) != v or v < 1 for v in strides)
        ):
            raise ValueError(
                f"strides must hold one positive integer per level ({len(sizes)}), got "
                f"{list(strides)}"
            )
        self.sizes = sizes
        self.aspect_ratios = aspect_ratios
        self.round_anchors = round_anchors
        self.offset = float(offset)
        self.strides = None if strides is None else tuple(int(v) for v in strides)

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios, strict=True)]

    def grid_anchors(
        self,
        grid_sizes: Sequence[tuple[int, int]],
        strides: Sequence[tuple[int, int]],
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> list[Tensor]:
        """Per level, anchors [H * W * A, 4] for a grid of (H, W) cells with (sy, sx) strides."""
        if len(grid_sizes) != len(self.sizes):
            raise ValueError(
                f"got {len(grid_sizes)} feature levels but the generator has {len(self.sizes)} "
                "(sizes per level)"
            )
        out = []
        for (gh, gw), (sy, sx), sizes, ratios in zip(
            grid_sizes, strides, self.sizes, self.aspect_ratios, strict=True
        ):
            base = cell_anchors(sizes, ratios, dtype, device, self.round_anchors)
            shift_x = torch.arange(gw, dtype=torch.int32, device=device).to(dtype)
            shift_y = torch.arange(gh, dtype=torch.int32, device=device).to(dtype)
            if self.offset:
                shift_x, shift_y = shift_x + self.offset, shift_y + self.offset
            shift_x, shift_y = shift_x * sx, shift_y * sy
            yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
            shifts = torch.stack((xx, yy, xx, yy), dim=-1).reshape(-1, 1, 4)
            out.append((shifts + base[None]).reshape(-1, 4))
        return out

    def forward(
        self,
        image_size: tuple[int, int],
        feature_sizes: Sequence[tuple[int, int]],
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> list[Tensor]:
        """Per level anchors for a (padded) batch image of ``image_size = (H, W)``.

        Strides are the fixed ``strides`` if given, else ``image_size // feature_size`` per
        axis, as in torchvision.
        """
        if self.strides is not None:
            if len(feature_sizes) != len(self.strides):
                raise ValueError(
                    f"got {len(feature_sizes)} feature levels but the generator has "
                    f"{len(self.strides)} strides"
                )
            strides = [(s, s) for s in self.strides]
        else:
            strides = [(image_size[0] // fh, image_size[1] // fw) for fh, fw in feature_sizes]
        return self.grid_anchors(feature_sizes, strides, dtype, device)
