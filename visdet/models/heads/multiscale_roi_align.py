"""RoIAlign over FPN levels: each RoI is pooled from the level that matches its size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visdet.ops import roi_align


def map_levels(
    boxes: Tensor,
    k_min: int,
    k_max: int,
    canonical_scale: float = 224.0,
    canonical_level: int = 4,
    eps: float = 1e-6,
) -> Tensor:
    """FPN level of each box (Lin et al. eq. 1), as an offset from k_min.

    ``k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps)`` clamped to
    [k_min, k_max]; returns ``k - k_min`` (int64 [N]).
    """
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    k = torch.floor(canonical_level + torch.log2(torch.sqrt(area) / canonical_scale) + eps)
    return (k.clamp(min=k_min, max=k_max) - k_min).to(torch.int64)


def level_scale(feature_height, image_height) -> float:
    """The power of two nearest ``feature_height / image_height`` (torchvision's rule). In an
    exported graph the padded image height is a multiple of every stride, so the scale is
    ``1 / (image_height // feature_height)``, a constant the exporter can prove."""
    if torch.compiler.is_exporting():
        return 1.0 / int(image_height // feature_height)
    return 2.0 ** round(math.log2(feature_height / image_height))


class MultiScaleRoIAlign(nn.Module):
    """Pool per-image boxes from the FPN level chosen by box size.

    Level scales are inferred from each feature map's size relative to the padded image
    (``2 ** round(log2(feature / image))``), so any backbone stride layout works.

    Args:
        featmap_names: the feature maps to pool from, lowest stride first.
        output_size: pooled (h, w) or an int.
        sampling_ratio: RoIAlign samples per bin (<= 0: adaptive).
        aligned: RoIAlign half-pixel alignment.
        canonical_scale, canonical_level: the level-mapping constants (224, 4).
    """

    def __init__(
        self,
        featmap_names: Sequence[str] = ("p2", "p3", "p4", "p5"),
        output_size: int | tuple[int, int] = 7,
        sampling_ratio: int = 2,
        aligned: bool = False,
        canonical_scale: float = 224.0,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        if not featmap_names:
            raise ValueError("featmap_names must name at least one feature map")
        self.featmap_names = tuple(featmap_names)
        self.output_size = (
            (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        )
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(
        self, features: dict[str, Tensor], boxes: list[Tensor], image_size: tuple[int, int]
    ) -> Tensor:
        """features: name -> [B, C, H, W]; boxes: per image [K_i, 4] in padded-image pixels;
        image_size: the padded (H, W). Returns [sum K_i, C, out_h, out_w]."""
        missing = [n for n in self.featmap_names if n not in features]
        if missing:
            raise ValueError(
                f"MultiScaleRoIAlign needs feature maps {list(self.featmap_names)}, "
                f"missing {missing}"
            )
        maps = [features[n] for n in self.featmap_names]
        scales = [level_scale(f.shape[-2], image_size[0]) for f in maps]
        rois = torch.cat(
            [
                torch.cat([b.new_full((b.shape[0], 1), float(i)), b], dim=1)
                for i, b in enumerate(boxes)
            ]
        )
        c = maps[0].shape[1]
        if len(maps) == 1:
            return roi_align(
                maps[0], rois, self.output_size, scales[0], self.sampling_ratio, self.aligned
            )
        k_min = int(-math.log2(scales[0]))
        k_max = int(-math.log2(scales[-1]))
        levels = map_levels(rois[:, 1:], k_min, k_max, self.canonical_scale, self.canonical_level)
        out = maps[0].new_zeros(rois.shape[0], c, *self.output_size)
        for lvl, (fmap, scale) in enumerate(zip(maps, scales, strict=True)):
            idx = torch.nonzero(levels == lvl).squeeze(1)
            if torch.compiler.is_exporting() or idx.numel():  # exported: no data branch
                out[idx] = roi_align(
                    fmap, rois[idx], self.output_size, scale, self.sampling_ratio, self.aligned
                ).to(out.dtype)
        return out
