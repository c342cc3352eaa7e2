"""Feature Pyramid Network (Lin et al. 2017) with optional extra levels."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

_EXTRA = ("none", "maxpool", "p6p7")
_NORMS = ("none", "bn")


def _conv(
    in_channels: int, out_channels: int, kernel_size: int, norm: str, stride: int = 1
) -> nn.Module:
    """A conv with bias (``norm="none"``) or conv (no bias) + BatchNorm2d (``norm="bn"``)."""
    pad = kernel_size // 2
    if norm == "none":
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad)
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class FPN(nn.Module):
    """Top-down pyramid: 1x1 lateral convs, nearest-neighbour upsampling, 3x3 output convs.

    Input features named ``c<k>`` give outputs ``p<k>``. Extra levels:
    ``"maxpool"`` adds P6 = max-pool(P5, kernel 1, stride 2) (Faster R-CNN);
    ``"p6p7"`` adds P6 = conv3x3/s2 and P7 = conv3x3/s2(ReLU(P6)) (RetinaNet), computed from
    P5 or, with ``p6p7_from="c5"``, from the last input feature; ``p7_relu=False`` drops the
    ReLU before P7 (MMDetection's FPN without ``relu_before_extra_convs``: its RetinaNet).

    ``norm="bn"`` makes every lateral and output conv a bias-free conv followed by
    BatchNorm2d (``inner_blocks.i.0`` conv, ``inner_blocks.i.1`` norm; torchvision's
    ``fasterrcnn_resnet50_fpn_v2``); the extra P6/P7 convs stay plain.

    Args:
        in_channels: channels of each input level, lowest stride first.
        out_channels: channels of every output level.
        in_features: names of the input levels, lowest stride first.
        extra_blocks: "none", "maxpool" or "p6p7".
        p6p7_from: "p5" or "c5" (only for p6p7).
        p7_relu: ReLU between P6 and the P7 conv (only for p6p7).
        norm: "none" (convs with bias) or "bn" (conv + BatchNorm2d).
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (256, 512, 1024, 2048),
        out_channels: int = 256,
        in_features: Sequence[str] = ("c2", "c3", "c4", "c5"),
        extra_blocks: str = "maxpool",
        p6p7_from: str = "p5",
        norm: str = "none",
        p7_relu: bool = True,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(in_features) or not in_features:
            raise ValueError(
                f"in_channels {list(in_channels)} and in_features "
                f"{list(in_features)} must be non-empty and of equal length"
            )
        if extra_blocks not in _EXTRA:
            raise ValueError(f"extra_blocks must be one of {_EXTRA}, got {extra_blocks!r}")
        if p6p7_from not in ("p5", "c5"):
            raise ValueError(f"p6p7_from must be 'p5' or 'c5', got {p6p7_from!r}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
        for name in in_features:
            if not (name.startswith("c") and name[1:].isdigit()):
                raise ValueError(f"in_features names must look like 'c<level>', got {name!r}")
        self.in_features = tuple(in_features)
        self.extra_blocks = extra_blocks
        self.p6p7_from = p6p7_from
        self.p7_relu = p7_relu
        self.norm = norm
        self.inner_blocks = nn.ModuleList(_conv(c, out_channels, 1, norm) for c in in_channels)
        self.layer_blocks = nn.ModuleList(
            _conv(out_channels, out_channels, 3, norm) for _ in in_channels
        )
        levels = [int(n[1:]) for n in in_features]
        self.out_features = [f"p{k}" for k in levels]
        if extra_blocks != "none":
            self.out_features.append(f"p{levels[-1] + 1}")
        if extra_blocks == "p6p7":
            src = out_channels if p6p7_from == "p5" else in_channels[-1]
            self.p6 = nn.Conv2d(src, out_channels, 3, 2, 1)
            self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
            self.out_features.append(f"p{levels[-1] + 2}")
        self.out_channels = out_channels
        # the levels computed from input stages (the RoI heads pool from these)
        self.pyramid_features = tuple(self.out_features[: len(in_features)])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def inputs(self, features: dict[str, Tensor]) -> list[Tensor]:
        missing = [n for n in self.in_features if n not in features]
        if missing:
            raise ValueError(
                f"{type(self).__name__} needs features {list(self.in_features)}, missing {missing}"
            )
        return [features[n] for n in self.in_features]

    def top_down(self, xs: list[Tensor]) -> list[Tensor]:
        """The pyramid levels from the inputs: laterals, top-down sums, 3x3 output convs."""
        last = self.inner_blocks[-1](xs[-1])
        outs = [self.layer_blocks[-1](last)]
        for i in range(len(xs) - 2, -1, -1):
            lateral = self.inner_blocks[i](xs[i])
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.layer_blocks[i](last))
        return outs

    def with_extra_levels(self, outs: list[Tensor], xs: list[Tensor]) -> OrderedDict[str, Tensor]:
        if self.extra_blocks == "maxpool":
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        elif self.extra_blocks == "p6p7":
            p6 = self.p6(outs[-1] if self.p6p7_from == "p5" else xs[-1])
            outs += [p6, self.p7(F.relu(p6) if self.p7_relu else p6)]
        return OrderedDict(zip(self.out_features, outs, strict=True))

    def forward(self, features: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
        """features: dict with the ``in_features`` maps -> OrderedDict ``p<k>`` maps."""
        xs = self.inputs(features)
        return self.with_extra_levels(self.top_down(xs), xs)
