"""Path Aggregation FPN (PANet, Liu et al. 2018), as MMDetection's ``PAFPN``: an FPN, then a
bottom-up path that adds each level, downsampled by a 3x3 stride-2 conv, to the level above,
and a 3x3 conv on every level but the lowest."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from visdet.models.necks.fpn import FPN, _conv


class PAFPN(FPN):
    """FPN + bottom-up path aggregation. Arguments as ``FPN``; the extra levels (P6 max-pool,
    or P6/P7 convs from the top output) come after the bottom-up path, as in MMDetection.

    Module names: FPN's (``inner_blocks``, ``layer_blocks``, ``p6``, ``p7``) plus
    ``downsample_convs.i`` (level i to i+1) and ``pafpn_convs.i`` (on level i+1).
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
        super().__init__(in_channels, out_channels, in_features, extra_blocks, p6p7_from, norm,
                         p7_relu)  # fmt: skip
        n = len(in_features) - 1
        self.downsample_convs = nn.ModuleList(
            _conv(out_channels, out_channels, 3, norm, stride=2) for _ in range(n)
        )
        self.pafpn_convs = nn.ModuleList(
            _conv(out_channels, out_channels, 3, norm) for _ in range(n)
        )
        for m in [*self.downsample_convs.modules(), *self.pafpn_convs.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: dict[str, Tensor]) -> OrderedDict[str, Tensor]:
        xs = self.inputs(features)
        inter = self.top_down(xs)
        for i in range(len(inter) - 1):
            inter[i + 1] = inter[i + 1] + self.downsample_convs[i](inter[i])
        outs = [inter[0]] + [conv(x) for conv, x in zip(self.pafpn_convs, inter[1:], strict=True)]
        return self.with_extra_levels(outs, xs)
