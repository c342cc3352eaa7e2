"""RetinaNet's dense head (Lin et al. 2017), laid out as torchvision's ``RetinaNetHead`` so its
state dict keys match (``classification_head.conv.{i}.0.weight``, ``.cls_logits``,
``regression_head.conv.{i}.*``, ``.bbox_reg``): two towers of ``num_convs`` 3x3 conv
(+ GroupNorm in torchvision's v2) + ReLU layers over every FPN level, then a 3x3 conv to
``A * K`` class logits and one to ``A * 4`` box deltas.

``forward(features)`` returns ``{"cls_logits": [B, sum(HWA), K], "bbox_regression":
[B, sum(HWA), 4]}``, levels concatenated in order, each level location-major with the anchors
of a location together (the order of ``visdet.ops.AnchorGenerator``). Column ``k`` of the
logits is class ``k + 1`` (visdet's labels are 1..K; torchvision's RetinaNet keeps an unused
column for its background index 0, which its converter drops).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

NORMS = ("none", "group")


def conv_tower(channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """``num_convs`` x (3x3 conv [+ GroupNorm(32), the conv then without bias] + ReLU),
    weights N(0, 0.01): the dense heads' towers (RetinaNet, ATSS)."""
    layers = []
    for _ in range(num_convs):
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none")
        parts = [conv] + ([nn.GroupNorm(32, channels)] if norm == "group" else [])
        layers.append(nn.Sequential(*parts, nn.ReLU(inplace=True)))
    tower = nn.Sequential(*layers)
    for m in tower.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return tower


def flatten_levels(levels: Sequence[Tensor], columns: int) -> Tensor:
    """Per level [B, A * C, H, W] -> [B, sum(HWA), C], levels concatenated in order, each
    location-major with a location's anchors together (the dense heads' output order)."""
    out = []
    for x in levels:
        b, _, h, w = x.shape
        out.append(x.view(b, -1, columns, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, columns))
    return torch.cat(out, 1)


class RetinaNetClassificationHead(nn.Module):
    def __init__(self, in_channels: int, num_anchors: int, num_classes: int,
                 prior_probability: float = 0.01, num_convs: int = 4,
                 norm: str = "none") -> None:  # fmt: skip
        super().__init__()
        if not 0 < prior_probability < 1:
            raise ValueError(f"prior_probability must be in (0, 1), got {prior_probability}")
        self.conv = conv_tower(in_channels, num_convs, norm)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(
            self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability)
        )
        self.num_classes = num_classes
        self.num_anchors = num_anchors

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return flatten_levels([self.cls_logits(self.conv(x)) for x in features], self.num_classes)


class RetinaNetRegressionHead(nn.Module):
    def __init__(self, in_channels: int, num_anchors: int, num_convs: int = 4,
                 norm: str = "none") -> None:  # fmt: skip
        super().__init__()
        self.conv = conv_tower(in_channels, num_convs, norm)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)
        nn.init.normal_(self.bbox_reg.weight, std=0.01)
        nn.init.zeros_(self.bbox_reg.bias)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return flatten_levels([self.bbox_reg(self.conv(x)) for x in features], 4)


class RetinaNetHead(nn.Module):
    """See the module docstring. ``norm``: ``"none"`` (torchvision v1, MMDetection) or
    ``"group"`` (GroupNorm(32), torchvision v2)."""

    def __init__(self, in_channels: int = 256, num_anchors: int = 9, num_classes: int = 80,
                 prior_probability: float = 0.01, num_convs: int = 4,
                 norm: str = "none") -> None:  # fmt: skip
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
        if num_classes < 1 or num_anchors < 1 or num_convs < 0:
            raise ValueError(
                f"num_classes and num_anchors must be >= 1 and num_convs >= 0, got "
                f"{num_classes}, {num_anchors}, {num_convs}"
            )
        self.classification_head = RetinaNetClassificationHead(
            in_channels, num_anchors, num_classes, prior_probability, num_convs, norm
        )
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, num_convs, norm)

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        features = list(features)
        return {
            "cls_logits": self.classification_head(features),
            "bbox_regression": self.regression_head(features),
        }
