"""FCOS's dense head (Tian et al. 2019), laid out as torchvision's ``FCOSHead`` so its state
dict keys match (``classification_head.conv.{3i}`` conv, ``.conv.{3i+1}`` GroupNorm(32),
``.cls_logits``; ``regression_head.conv.*``, ``.bbox_reg``, ``.bbox_ctrness``): two towers of
``num_convs`` 3x3 conv (with bias) + GroupNorm + ReLU over every FPN level, then 3x3 convs to
``A * K`` class logits, ``A * 4`` non-negative box distances (ReLU) and ``A`` centerness logits.
``level_scales=n`` adds MMDetection's learnable scale per level (``regression_head.scales``
[n], initially 1), multiplying the distances before the ReLU.

``forward(features)`` returns ``{"cls_logits": [B, sum(HWA), K], "bbox_regression":
[B, sum(HWA), 4], "bbox_ctrness": [B, sum(HWA), 1]}`` in ``RetinaNetHead``'s order; column
``k`` of the logits is class ``k + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visdet.models.heads.retinanet_head import flatten_levels


def _tower(channels: int, num_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        conv = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.GroupNorm(32, channels), nn.ReLU()]
    return nn.Sequential(*layers)


def _init(conv: nn.Conv2d, bias: float = 0.0) -> nn.Conv2d:
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, bias)
    return conv


class FCOSClassificationHead(nn.Module):
    def __init__(self, in_channels: int, num_anchors: int, num_classes: int,
                 num_convs: int = 4, prior_probability: float = 0.01) -> None:  # fmt: skip
        super().__init__()
        if not 0 < prior_probability < 1:
            raise ValueError(f"prior_probability must be in (0, 1), got {prior_probability}")
        self.conv = _tower(in_channels, num_convs)
        prior = -math.log((1 - prior_probability) / prior_probability)
        self.cls_logits = _init(nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1),
                                prior)  # fmt: skip
        self.num_classes = num_classes

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return flatten_levels([self.cls_logits(self.conv(x)) for x in features], self.num_classes)


class FCOSRegressionHead(nn.Module):
    def __init__(self, in_channels: int, num_anchors: int, num_convs: int = 4,
                 level_scales: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.conv = _tower(in_channels, num_convs)
        self.bbox_reg = _init(nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1))
        self.bbox_ctrness = _init(nn.Conv2d(in_channels, num_anchors, 3, padding=1))
        self.scales = nn.Parameter(torch.ones(level_scales)) if level_scales else None

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        towers = [self.conv(x) for x in features]
        if self.scales is not None and len(towers) != self.scales.numel():
            raise ValueError(
                f"FCOSHead has {self.scales.numel()} level scales, got {len(towers)} levels"
            )
        distances = [
            torch.relu(
                self.bbox_reg(t) if self.scales is None else self.bbox_reg(t) * self.scales[i]
            )
            for i, t in enumerate(towers)
        ]
        return flatten_levels(distances, 4), flatten_levels(
            [self.bbox_ctrness(t) for t in towers], 1
        )


class FCOSHead(nn.Module):
    """See the module docstring (torchvision's FCOS uses one anchor per location)."""

    def __init__(self, in_channels: int = 256, num_anchors: int = 1, num_classes: int = 80,
                 num_convs: int = 4, prior_probability: float = 0.01,
                 level_scales: int = 0) -> None:  # fmt: skip
        super().__init__()
        if num_classes < 1 or num_anchors < 1 or num_convs < 0 or level_scales < 0:
            raise ValueError(
                f"num_classes and num_anchors must be >= 1, num_convs and level_scales >= 0, "
                f"got {num_classes}, {num_anchors}, {num_convs}, {level_scales}"
            )
        self.classification_head = FCOSClassificationHead(
            in_channels, num_anchors, num_classes, num_convs, prior_probability
        )
        self.regression_head = FCOSRegressionHead(in_channels, num_anchors, num_convs,
                                                  level_scales)  # fmt: skip

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        features = list(features)
        distances, centerness = self.regression_head(features)
        return {
            "cls_logits": self.classification_head(features),
            "bbox_regression": distances,
            "bbox_ctrness": centerness,
        }
