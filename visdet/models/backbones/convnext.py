"""ConvNeXt-T/S/B (Liu et al. 2022) with torchvision's state-dict layout.

Module names equal torchvision's ``convnext_*`` (``features.0`` the 4x4 patchify stem,
``features.1/3/5/7`` the stages, ``features.2/4/6`` the downsampling layers, ``classifier``),
so a torchvision ImageNet checkpoint loads with ``strict=True``; ``adapt_state_dict`` also
takes timm's ``convnext_*`` checkpoints (``stem``, ``stages.i.blocks.j``, ``head``). Stages
``c2``..``c5`` at strides 4..32 are the outputs of the four stages (no extra norms), as
torchvision's ``features`` computes them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from visdet.models.backbones.base import Backbone, StageInfo
from visdet.models.backbones.stochastic_depth import StochasticDepth
from visdet.models.backbones.truncation import (
    checked_out_stages,
    cut_after,
    foreign_keys_error,
    frozen_trunk_length,
    without_unheld,
)

STAGE_NAMES = ("c2", "c3", "c4", "c5")
STAGE_INDEX = {"c2": 1, "c3": 3, "c4": 5, "c5": 7}  # features.k whose output is the stage
STAGE_AT = {i: s for s, i in STAGE_INDEX.items()}  # features index -> the stage it ends

# (stage widths, blocks per stage, torchvision's stochastic depth for ImageNet training)
ARCHITECTURES = {
    "tiny": ((96, 192, 384, 768), (3, 3, 9, 3), 0.1),
    "small": ((96, 192, 384, 768), (3, 3, 27, 3), 0.4),
    "base": ((128, 256, 512, 1024), (3, 3, 27, 3), 0.5),
}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (torchvision's ``LayerNorm2d``)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)


class CNBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm, 4x MLP (GELU), layer scale, stochastic depth."""

    def __init__(self, dim: int, layer_scale: float, drop_path: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim),
            Permute((0, 2, 3, 1)),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute((0, 3, 1, 2)),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(Backbone):
    """ConvNeXt trunk returning the selected stages.

    Args:
        size: ``"tiny"``, ``"small"`` or ``"base"``.
        out_stages: which of ``"c2"``..``"c5"`` forward returns.
        drop_path: stochastic depth rate of the last block (linear from 0); None takes
            torchvision's ImageNet value (0.1 / 0.4 / 0.5); 0 for exact inference.
        frozen_stages: -1 trains everything; k >= 0 freezes the stem and stages 1..k.
        num_classes: adds torchvision's classifier (``avgpool`` + ``classifier``) and forward
            also returns ``"logits"``; keep 1000 to load an ImageNet checkpoint with it.
    """

    lora_pattern = r"features\.[57]\.\d+\.block\.[35]"  # the MLP linears of the last 2 stages

    def __init__(
        self,
        size: str = "tiny",
        out_stages: Sequence[str] = STAGE_NAMES,
        drop_path: float | None = None,
        frozen_stages: int = -1,
        num_classes: int | None = None,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        if size not in ARCHITECTURES:
            raise ValueError(f"size must be one of {sorted(ARCHITECTURES)}, got {size!r}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [-1, 4], got {frozen_stages}")
        widths, depths, default_drop = ARCHITECTURES[size]
        drop_path = default_drop if drop_path is None else float(drop_path)
        self.size = size
        self.out_stages = checked_out_stages(out_stages, STAGE_NAMES)
        self.frozen_stages = frozen_stages
        self.dropped: tuple[str, ...] = ()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, widths[0], 4, 4), LayerNorm2d(widths[0], eps=1e-6))
        ]
        total, done = sum(depths), 0
        self.feature_info: OrderedDict[str, StageInfo] = OrderedDict()
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            if i > 0:
                layers.append(
                    nn.Sequential(
                        LayerNorm2d(widths[i - 1], eps=1e-6), nn.Conv2d(widths[i - 1], width, 2, 2)
                    )
                )
            blocks = [
                CNBlock(width, layer_scale, drop_path * (done + j) / (total - 1))
                for j in range(depth)
            ]
            done += depth
            layers.append(nn.Sequential(*blocks))
            self.feature_info[STAGE_NAMES[i]] = StageInfo(width, 4 * 2**i)
        self.features = nn.Sequential(*layers)
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(
                LayerNorm2d(widths[-1], eps=1e-6), nn.Flatten(1), nn.Linear(widths[-1], num_classes)
            )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for k in range(frozen_trunk_length(frozen_stages)):
            self.features[k].requires_grad_(False)

    @property
    def name(self) -> str:
        return f"convnext_{self.size}"

    @property
    def display_name(self) -> str:
        return f"ConvNeXt-{self.size[0].upper()}"

    def truncate(self, stage: str) -> None:
        """Drop the layers after ``stage`` (named in ``dropped`` for checkpoint loading)."""
        if self.num_classes is not None:
            raise ValueError("a ConvNeXt with a classifier (num_classes) cannot be truncated")
        self.dropped += cut_after(self.features, "features", STAGE_INDEX, stage)
        self.out_stages = tuple(s for s in self.out_stages if s <= stage) or (stage,)

    def param_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """Stem, then each stage with the downsampling layer in front of it (+ classifier)."""
        groups = [("stem", ("features.0.",))]
        groups += [
            (
                f"stage{i + 1}",
                tuple(f"features.{k}." for k in ((1,) if i == 0 else (2 * i, 2 * i + 1))),
            )
            for i in range(4)
        ]
        return groups + ([("classifier", ("classifier.",))] if self.num_classes is not None else [])

    def adapt_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A torchvision (``features.*``) or timm (``stem.*``, ``stages.*``) ConvNeXt state
        dict in this backbone's names, without the classifier (unless ``num_classes``) and
        dropped layers."""
        if "stem.0.weight" in state:
            state = timm_convnext_to_torchvision(state)
        if "features.0.0.weight" not in state:
            raise foreign_keys_error(
                "ConvNeXt", "features.0.0.weight (torchvision) or stem.0.weight (timm)", state
            )
        return without_unheld(
            state, None if self.num_classes is not None else "classifier", self.dropped
        )

    def output_size(self, height: int, width: int, stage: str) -> tuple[int, int]:
        """floor(n / 4) after the stem, then floor(n / 2) per downsampling layer."""
        if stage not in STAGE_NAMES:
            raise ValueError(f"stage must be one of {STAGE_NAMES}, got {stage!r}")
        if height < 1 or width < 1:
            raise ValueError(f"input size must be >= 1, got {height}x{width}")
        div = 4 * 2 ** STAGE_NAMES.index(stage)
        return _floor_chain(height, div), _floor_chain(width, div)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"ConvNeXt input must be [B, 3, H, W], got {list(x.shape)}")
        out: OrderedDict[str, Tensor] = OrderedDict()
        last = STAGE_INDEX["c5" if self.num_classes is not None else self.out_stages[-1]]
        for k in range(last + 1):
            stage = STAGE_AT.get(k)
            x = self.run_stage(stage, self.features[k], x)
            if stage in self.out_stages:
                out[stage] = x
        if self.num_classes is not None:
            out["logits"] = self.classifier(self.avgpool(x))
        return out


def _floor_chain(n: int, div: int) -> int:
    """n after a stride-4 then stride-2 non-overlapping convolutions down to 1/div."""
    n //= 4
    d = 4
    while d < div:
        n //= 2
        d *= 2
    return n


def timm_convnext_to_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm's ConvNeXt names -> torchvision's (``stem.0`` -> ``features.0.0``,
    ``stages.i.blocks.j.conv_dw`` -> ``features.{2i+1}.j.block.0``, ``gamma`` [C] ->
    ``layer_scale`` [C, 1, 1], ``head.norm``/``head.fc`` -> ``classifier.0``/``.2``)."""
    block_parts = {
        "conv_dw": "block.0",
        "norm": "block.2",
        "mlp.fc1": "block.3",
        "mlp.fc2": "block.5",
    }
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "stem":
            out[f"features.0.{'.'.join(parts[1:])}"] = value
        elif parts[0] == "stages" and parts[2] == "downsample":
            out[f"features.{2 * int(parts[1])}.{'.'.join(parts[3:])}"] = value
        elif parts[0] == "stages" and parts[2] == "blocks":
            rest = ".".join(parts[4:])
            prefix = f"features.{2 * int(parts[1]) + 1}.{parts[3]}"
            if rest == "gamma":
                out[f"{prefix}.layer_scale"] = value.reshape(-1, 1, 1)
                continue
            name, _, leaf = rest.rpartition(".")
            if name not in block_parts:
                raise ValueError(f"unknown timm ConvNeXt key {key!r} (shape {list(value.shape)})")
            out[f"{prefix}.{block_parts[name]}.{leaf}"] = value
        elif parts[0] == "head" and parts[1] in ("norm", "fc"):
            out[f"classifier.{0 if parts[1] == 'norm' else 2}.{parts[-1]}"] = value
        else:
            raise ValueError(f"unknown timm ConvNeXt key {key!r} (shape {list(value.shape)})")
    return out
