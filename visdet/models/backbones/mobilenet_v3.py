"""MobileNetV3-Large (Howard et al. 2019) with torchvision's state-dict layout.

Module names equal torchvision's ``mobilenet_v3_large`` (``features.0`` the stem,
``features.1..15`` the inverted residual blocks, ``features.16`` the 1x1 conv to 960,
``classifier``), so a torchvision ImageNet checkpoint loads with ``strict=True``.

Stages: ``c2``, ``c3``, ``c4`` (the last block at strides 4, 8, 16), ``c5_0`` (the first
stride-32 block, ``features.13``, 160 channels) and ``c5`` (``features.16``, 960). torchvision's
``fasterrcnn_mobilenet_v3_large_fpn`` puts its FPN on ``c5_0`` and ``c5`` (both stride 32);
``conf/neck/fpn_mobilenet`` does the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F

from visdet.models.backbones.base import Backbone, StageInfo
from visdet.models.backbones.conv_bn import conv_bn
from visdet.models.backbones.frozen_batch_norm import FrozenBatchNorm2d
from visdet.models.backbones.truncation import (
    checked_out_stages,
    cut_after,
    foreign_keys_error,
    without_unheld,
)

# input, kernel, expanded, output, squeeze-excitation, hard-swish, stride (torchvision's
# mobilenet_v3_large table, width 1.0)
BLOCKS = (
    (16, 3, 16, 16, False, False, 1),
    (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1),
    (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1),
    (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2),
    (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
)
STAGE_INDEX = {"c2": 3, "c3": 6, "c4": 12, "c5_0": 13, "c5": 16}
STAGE_AT = {i: s for s, i in STAGE_INDEX.items()}  # features index -> the stage it ends
# features index -> the stage it belongs to (the stem, features.0, to none)
STAGE_OF = {
    k: next((s for s, i in STAGE_INDEX.items() if k <= i), None) if k else None
    for k in range(max(STAGE_INDEX.values()) + 1)
}
STAGE_INFO = {"c2": (24, 4), "c3": (40, 8), "c4": (112, 16), "c5_0": (160, 32), "c5": (960, 32)}
_NORMS = {"bn": nn.BatchNorm2d, "frozen_bn": FrozenBatchNorm2d}


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: the nearest multiple of ``divisor`` not below 90 %."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class ConvNormAct(nn.Sequential):
    """(conv, norm[, activation]) with torchvision's module names (0, 1, 2); conv and norm
    run as one folded conv without autograd (``conv_bn``)."""

    def forward(self, x: Tensor) -> Tensor:
        x = conv_bn(self[0], self[1], x)
        return self[2](x) if len(self) > 2 else x


def conv_norm_act(in_ch, out_ch, kernel, stride, norm, act, groups=1) -> ConvNormAct:
    """torchvision's ``Conv2dNormActivation``: conv (no bias), norm, optional activation."""
    pad = (kernel - 1) // 2
    layers = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, pad, groups=groups, bias=False),
        norm(out_ch),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return ConvNormAct(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    def __init__(self, in_ch, kernel, expanded, out_ch, se, hs, stride, norm) -> None:
        super().__init__()
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != in_ch:
            layers.append(conv_norm_act(in_ch, expanded, 1, 1, norm, act))
        layers.append(conv_norm_act(expanded, expanded, kernel, stride, norm, act, groups=expanded))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(conv_norm_act(expanded, out_ch, 1, 1, norm, None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class MobileNetV3(Backbone):
    """MobileNetV3-Large trunk returning the selected stages.

    Args:
        out_stages: which of ``c2, c3, c4, c5_0, c5`` forward returns.
        norm: ``"bn"`` (eps 0.001, momentum 0.01, torchvision's) or ``"frozen_bn"``.
        bn_eps: BatchNorm eps: torchvision's 0.001; 1e-5 reproduces a timm checkpoint's
            outputs exactly (timm's default).
        trainable_layers: torchvision's detection rule: how many of its 6 stages (stem, then
            the blocks from each strided block on, counted from the top) train; 6 trains
            everything (default), 3 is torchvision's detector default.
        num_classes: adds torchvision's classifier; forward also returns ``"logits"``.
    """

    # the 1x1 expansion and projection convs of the last five blocks (not the depthwise
    # ones: a dense low-rank update cannot merge into a grouped kernel)
    lora_pattern = r"features\.1[1-5]\.block\.[03]\.0$"
    # torchvision's stage starts: the stem, then each strided block, then the last conv
    STAGE_STARTS = (0, 2, 4, 7, 13, 16)

    def __init__(
        self,
        out_stages: Sequence[str] = ("c5_0", "c5"),
        norm: str = "bn",
        trainable_layers: int = 6,
        bn_eps: float = 0.001,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {sorted(_NORMS)}, got {norm!r}")
        if not 0 <= trainable_layers <= 6:
            raise ValueError(f"trainable_layers must be in [0, 6], got {trainable_layers}")
        if norm == "bn":

            def norm_layer(c):
                return nn.BatchNorm2d(c, eps=bn_eps, momentum=0.01)
        else:

            def norm_layer(c):
                return FrozenBatchNorm2d(c, eps=bn_eps)

        layers: list[nn.Module] = [conv_norm_act(3, 16, 3, 2, norm_layer, nn.Hardswish)]
        layers += [InvertedResidual(*b, norm_layer) for b in BLOCKS]
        layers.append(conv_norm_act(160, 960, 1, 1, norm_layer, nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.out_stages = checked_out_stages(out_stages, tuple(STAGE_INDEX))
        self.feature_info = OrderedDict((s, StageInfo(*STAGE_INFO[s])) for s in STAGE_INDEX)
        self.dropped: tuple[str, ...] = ()
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                nn.Linear(960, 1280), nn.Hardswish(inplace=True), nn.Dropout(0.2, inplace=True),
                nn.Linear(1280, num_classes),
            )  # fmt: skip
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        self.trainable_layers = trainable_layers
        freeze_before = (
            len(self.features) if trainable_layers == 0 else self.STAGE_STARTS[6 - trainable_layers]
        )
        self.frozen_modules = list(self.features)[:freeze_before]
        for m in self.frozen_modules:
            m.requires_grad_(False)

    @property
    def name(self) -> str:
        return "mobilenet_v3_large"

    @property
    def display_name(self) -> str:
        return "MobileNetV3-Large"

    def truncate(self, stage: str) -> None:
        if self.num_classes is not None:
            raise ValueError("a MobileNetV3 with a classifier (num_classes) cannot be truncated")
        self.dropped += cut_after(self.features, "features", STAGE_INDEX, stage)
        order = list(STAGE_INDEX)
        kept = tuple(s for s in self.out_stages if order.index(s) <= order.index(stage))
        self.out_stages = kept or (stage,)

    def param_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """torchvision's six stages (stem, the blocks from each strided block on, the last
        conv), then the classifier."""
        starts = (*self.STAGE_STARTS, len(self.features))
        groups = [
            (f"stage{i}", tuple(f"features.{k}." for k in range(starts[i], starts[i + 1])))
            for i in range(len(self.STAGE_STARTS) - 1)
        ]
        groups.append(("last_conv", ("features.16.",)))
        return groups + ([("classifier", ("classifier.",))] if self.num_classes is not None else [])

    def adapt_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A torchvision (``features.*``) or timm (``conv_stem``, ``blocks.i.j``; e.g.
        ``mobilenetv3_large_100``) MobileNetV3-Large state dict without the classifier
        (unless ``num_classes``) and dropped layers."""
        if "conv_stem.weight" in state:
            state = timm_mobilenet_v3_to_torchvision(state)
        if "features.0.0.weight" not in state or "features.16.0.weight" not in state:
            raise foreign_keys_error(
                "MobileNetV3-Large (torchvision)",
                "features.0.0.weight ... features.16.0.weight",
                state,
            )
        return without_unheld(
            state, None if self.num_classes is not None else "classifier", self.dropped
        )

    def output_size(self, height: int, width: int, stage: str) -> tuple[int, int]:
        """Each stride-2 conv (padding (k-1)/2) maps n to floor((n - 1) / 2) + 1."""
        if stage not in STAGE_INDEX:
            raise ValueError(f"stage must be one of {tuple(STAGE_INDEX)}, got {stage!r}")
        if height < 1 or width < 1:
            raise ValueError(f"input size must be >= 1, got {height}x{width}")
        for _ in range(STAGE_INFO[stage][1].bit_length() - 1):
            height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        return height, width

    def train(self, mode: bool = True) -> MobileNetV3:
        super().train(mode)
        for m in self.frozen_modules:
            m.eval()  # frozen stages keep their BatchNorm statistics
        return self

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"MobileNetV3 input must be [B, 3, H, W], got {list(x.shape)}")
        out: OrderedDict[str, Tensor] = OrderedDict()
        last = STAGE_INDEX["c5" if self.num_classes is not None else self.out_stages[-1]]
        for k in range(last + 1):
            # each features.k is one block (the last conv a Conv-BN-activation Sequential)
            x = self.run_stage(STAGE_OF[k], self.features[k], x, per_block=False)
            if STAGE_AT.get(k) in self.out_stages:
                out[STAGE_AT[k]] = x
        if self.num_classes is not None:
            out["logits"] = self.classifier(self.avgpool(x).flatten(1))
        return out


# timm's blocks.i.j -> torchvision's features.k: stage i holds these many blocks
_TIMM_STAGE_BLOCKS = (1, 2, 3, 4, 2, 3, 1)


def timm_mobilenet_v3_to_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm's MobileNetV3-Large names -> torchvision's (``conv_stem``/``bn1`` -> ``features.0``,
    ``blocks.i.j`` -> ``features.k``: ``conv_pw``/``conv_dw``/``se``/``conv_pwl`` with their
    norms -> ``block.0..3``; ``blocks.6.0`` -> ``features.16``; the 1x1 ``conv_head`` ->
    ``classifier.0``, ``classifier`` -> ``classifier.3``). timm's BatchNorm eps is 1e-5
    where torchvision's is 1e-3: build the backbone with ``bn_eps=1e-5`` for timm's outputs."""
    starts = [1 + sum(_TIMM_STAGE_BLOCKS[:i]) for i in range(len(_TIMM_STAGE_BLOCKS))]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module in ("conv_stem", "bn1"):
            out[f"features.0.{0 if module == 'conv_stem' else 1}.{leaf}"] = value
        elif module == "conv_head":
            out[f"classifier.0.{leaf}"] = value.flatten(1) if leaf == "weight" else value
        elif module == "classifier":
            out[f"classifier.3.{leaf}"] = value
        elif key.startswith("blocks."):
            _, i, j, rest = key.split(".", 3)
            k = starts[int(i)] + int(j)
            part, _, leaf = rest.rpartition(".")
            has_se = f"blocks.{i}.{j}.se.conv_reduce.weight" in state
            out[f"features.{k}.{_timm_block_part(int(i), part, key, has_se)}.{leaf}"] = value
        else:
            raise ValueError(f"unknown timm MobileNetV3 key {key!r} (shape {list(value.shape)})")
    return out


def _timm_block_part(stage: int, part: str, key: str, has_se: bool) -> str:
    if stage == 0:  # depthwise-separable: dw conv, then the projection
        parts = {"conv_dw": "block.0.0", "bn1": "block.0.1", "conv_pw": "block.1.0",
                 "bn2": "block.1.1"}  # fmt: skip
    elif stage == 6:  # the last 1x1 conv to 960
        parts = {"conv": "0", "bn1": "1"}
    else:  # inverted residual: expand, dw, [squeeze-excitation], project
        last = "block.3" if has_se else "block.2"
        parts = {"conv_pw": "block.0.0", "bn1": "block.0.1", "conv_dw": "block.1.0",
                 "bn2": "block.1.1", "se.conv_reduce": "block.2.fc1",
                 "se.conv_expand": "block.2.fc2", "conv_pwl": f"{last}.0",
                 "bn3": f"{last}.1"}  # fmt: skip
    if part not in parts:
        raise ValueError(f"unknown timm MobileNetV3 key {key!r}")
    return parts[part]
