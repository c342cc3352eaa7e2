"""ATSS's dense head (Zhang et al. 2020), as MMDetection's ``ATSSHead``: two towers of
``num_convs`` 3x3 conv + GroupNorm(32) + ReLU over every level; from the classification tower
a 3x3 conv to ``A * K`` class logits, from the regression tower a 3x3 conv to ``A * 4`` box
deltas (multiplied by a learnable scale per level) and one to ``A`` centerness logits.

``forward(features)`` returns ``{"cls_logits": [B, N, K], "bbox_regression": [B, N, 4],
"bbox_ctrness": [B, N, 1]}`` in ``RetinaNetHead``'s order (column ``k`` is class ``k + 1``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visdet.models.heads.retinanet_head import conv_tower, flatten_levels


def _conv(in_channels: int, out_channels: int, bias: float = 0.0) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, bias)
    return conv


class ATSSHead(nn.Module):
    """See the module docstring. ``num_levels``: pyramid levels (one box scale each)."""

    def __init__(self, in_channels: int = 256, num_anchors: int = 1, num_classes: int = 80,
                 num_convs: int = 4, prior_probability: float = 0.01, num_levels: int = 5,
                 norm: str = "group") -> None:  # fmt: skip
        super().__init__()
        if num_classes < 1 or num_anchors < 1 or num_convs < 0 or num_levels < 1:
            raise ValueError(
                f"num_classes, num_anchors and num_levels must be >= 1 and num_convs >= 0, got "
                f"{num_classes}, {num_anchors}, {num_levels}, {num_convs}"
            )
        if not 0 < prior_probability < 1:
            raise ValueError(f"prior_probability must be in (0, 1), got {prior_probability}")
        prior = -math.log((1 - prior_probability) / prior_probability)
        self.cls_tower = conv_tower(in_channels, num_convs, norm)
        self.reg_tower = conv_tower(in_channels, num_convs, norm)
        self.cls_logits = _conv(in_channels, num_anchors * num_classes, prior)
        self.bbox_reg = _conv(in_channels, num_anchors * 4)
        self.bbox_ctrness = _conv(in_channels, num_anchors)
        self.scales = nn.Parameter(torch.ones(num_levels))
        self.num_classes = num_classes

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        features = list(features)
        if len(features) != self.scales.numel():
            raise ValueError(f"ATSSHead has {self.scales.numel()} levels, got {len(features)}")
        logits, deltas, ctrness = [], [], []
        for i, x in enumerate(features):
            logits.append(self.cls_logits(self.cls_tower(x)))
            reg = self.reg_tower(x)
            deltas.append(self.bbox_reg(reg) * self.scales[i])
            ctrness.append(self.bbox_ctrness(reg))
        return {
            "cls_logits": flatten_levels(logits, self.num_classes),
            "bbox_regression": flatten_levels(deltas, 4),
            "bbox_ctrness": flatten_levels(ctrness, 1),
        }
