"""ViTDet's simple feature pyramid (Li et al. 2022): a multi-scale pyramid from the single
stride-16 map of a plain ViT, by deconvolutions (x4, x2), the map itself (x1) and a max-pool
(x0.5), each followed by a 1x1 and a 3x3 conv with channel LayerNorm (detectron2's
``SimpleFeaturePyramid``), plus the usual extra levels."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from visdet.models.backbones.convnext import LayerNorm2d

_EXTRA = ("none", "maxpool", "p6p7")


def _conv_norm(in_ch: int, out_ch: int, kernel: int, norm: str) -> nn.Sequential:
    if norm == "none":
        return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2))
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
                         LayerNorm2d(out_ch, eps=1e-6))  # fmt: skip


def _rescale(dim: int, scale: float) -> tuple[nn.Module, int]:
    """The resampling stage for ``scale`` and its output channels."""
    if scale == 4.0:
        half = dim // 2
        return nn.Sequential(
            nn.ConvTranspose2d(dim, half, 2, 2), LayerNorm2d(half, eps=1e-6), nn.GELU(),
            nn.ConvTranspose2d(half, dim // 4, 2, 2),
        ), dim // 4  # fmt: skip
    if scale == 2.0:
        return nn.ConvTranspose2d(dim, dim // 2, 2, 2), dim // 2
    if scale == 1.0:
        return nn.Identity(), dim
    if scale == 0.5:
        return nn.MaxPool2d(2, 2), dim
    raise ValueError(f"scales must be among 4, 2, 1, 0.5, got {scale}")


class SimpleFeaturePyramid(nn.Module):
    """Levels ``p<k>`` from one backbone stage taken as level 4 (stride 16): scale 4 gives
    p2, 2 gives p3, 1 p4, 0.5 p5 (a ViT with patch 14 gives strides 3.5 .. 28: the names
    keep the level). Extra levels as FPN's: ``maxpool`` (P6 = max-pool(P5, 1, stride 2)) or
    ``p6p7`` (3x3 stride-2 convs from the top level, ReLU before P7).

    Args:
        in_channels: a one-element list (the backbone stage's channels; neck_for passes it).
        out_channels: channels of every level.
        in_features: the one backbone stage it reads (``[tokens]`` for ViT).
        scales: the levels, highest resolution first (a subset of 4, 2, 1, 0.5 in order).
        extra_blocks: "none", "maxpool" or "p6p7".
        norm: "ln" (bias-free convs + channel LayerNorm, ViTDet's) or "none".
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (768,),
        out_channels: int = 256,
        in_features: Sequence[str] = ("tokens",),
        scales: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        extra_blocks: str = "maxpool",
        norm: str = "ln",
    ) -> None:
        super().__init__()
        if len(in_features) != 1 or len(in_channels) != 1:
            raise ValueError(
                f"SimpleFeaturePyramid reads one stage, got in_features {list(in_features)}"
            )
        scales = [float(s) for s in scales]
        if not scales or scales != sorted(scales, reverse=True) or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct and decreasing, got {scales}")
        if extra_blocks not in _EXTRA:
            raise ValueError(f"extra_blocks must be one of {_EXTRA}, got {extra_blocks!r}")
        if norm not in ("ln", "none"):
            raise ValueError(f"norm must be 'ln' or 'none', got {norm!r}")
        self.in_features = tuple(in_features)
        self.extra_blocks = extra_blocks
        self.stages = nn.ModuleList()
        for s in scales:
            rescale, ch = _rescale(int(in_channels[0]), s)
            self.stages.append(nn.Sequential(OrderedDict(
                rescale=rescale, lateral=_conv_norm(ch, out_channels, 1, norm),
                output=_conv_norm(out_channels, out_channels, 3, norm),
            )))  # fmt: skip
        levels = [4 - int(math.log2(s)) for s in scales]
        self.out_features = [f"p{k}" for k in levels]
        self.pyramid_features = tuple(self.out_features)
        if extra_blocks != "none":
            self.out_features.append(f"p{levels[-1] + 1}")
        if extra_blocks == "p6p7":
            self.p6 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
            self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
            self.out_features.append(f"p{levels[-1] + 2}")
        self.out_channels = out_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
        name = self.in_features[0]
        if name not in features:
            raise ValueError(f"SimpleFeaturePyramid needs feature {name!r}, got {list(features)}")
        x = features[name]
        outs = [stage(x) for stage in self.stages]
        if self.extra_blocks == "maxpool":
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        elif self.extra_blocks == "p6p7":
            p6 = self.p6(outs[-1])
            outs += [p6, self.p7(F.relu(p6))]
        return OrderedDict(zip(self.out_features, outs, strict=True))
