"""Swin Transformer v1, Swin-T/S/B (Liu et al. 2021), with torchvision's state-dict layout.

Module names equal torchvision's ``swin_t/s/b`` (``features.0`` the 4x4 patch embedding,
``features.1/3/5/7`` the stages, ``features.2/4/6`` patch merging, ``norm``, ``head``), so a
torchvision ImageNet checkpoint loads with ``strict=True``; ``adapt_state_dict`` also takes
timm's ``swin_*_patch4_window7_224`` checkpoints. Stages ``c2``..``c5`` (strides 4..32) are
the stage outputs as NCHW; ``c5`` goes through the final ``norm``, as torchvision's
``norm(features(x))``. Any input size: feature maps are padded to whole windows, and the
shift is dropped where a window covers the whole map (torchvision's rule).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from visdet.models.backbones.base import Backbone, StageInfo
from visdet.models.backbones.convnext import Permute
from visdet.models.backbones.stochastic_depth import StochasticDepth
from visdet.models.backbones.truncation import (
    checked_out_stages,
    cut_after,
    foreign_keys_error,
    frozen_trunk_length,
    without_unheld,
)

STAGE_NAMES = ("c2", "c3", "c4", "c5")
STAGE_INDEX = {"c2": 1, "c3": 3, "c4": 5, "c5": 7}
STAGE_AT = {i: s for s, i in STAGE_INDEX.items()}  # features index -> the stage it ends

# (embedding width, blocks per stage, heads per stage, torchvision's ImageNet drop path)
ARCHITECTURES = {
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3),
    "base": (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5),
}


def relative_position_index(window: int) -> Tensor:
    """[window^2 * window^2] index into the (2w-1)^2 bias table for each pair of tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return (rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]).flatten()


def shift_mask(pad_h: int, pad_w: int, window: int, shift: tuple[int, int], device) -> Tensor:
    """[windows, w^2, w^2] additive mask (0 or -100) keeping attention inside the regions
    that were neighbours before the cyclic shift."""
    region = torch.zeros(pad_h, pad_w, device=device)
    count = 0
    for hs in ((0, -window), (-window, -shift[0]), (-shift[0], None)):
        for ws in ((0, -window), (-window, -shift[1]), (-shift[1], None)):
            region[hs[0] : hs[1], ws[0] : ws[1]] = count
            count += 1
    region = region.view(pad_h // window, window, pad_w // window, window)
    region = region.permute(0, 2, 1, 3).reshape(-1, window * window)
    diff = region.unsqueeze(1) - region.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0)


class ShiftedWindowAttention(nn.Module):
    """Multi-head self-attention inside (shifted) windows, with relative position bias."""

    def __init__(self, dim: int, window: int, shift: int, num_heads: int) -> None:
        super().__init__()
        self.window, self.shift, self.num_heads = window, shift, num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, H, W, C] -> [B, H, W, C]."""
        b, h, w, c = x.shape
        ws = self.window
        pad_r, pad_b = (ws - w % ws) % ws, (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        shift = (0 if ws >= ph else self.shift, 0 if ws >= pw else self.shift)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        nw = (ph // ws) * (pw // ws)
        x = x.view(b, ph // ws, ws, pw // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b * nw, ws * ws, c)
        heads = self.num_heads
        qkv = self.qkv(x).reshape(b * nw, ws * ws, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // heads) ** -0.5, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index]
        attn = attn + bias.view(ws * ws, ws * ws, -1).permute(2, 0, 1).unsqueeze(0)
        if sum(shift) > 0:
            mask = shift_mask(ph, pw, ws, shift, x.device).to(attn.dtype)
            attn = attn.view(b, nw, heads, ws * ws, ws * ws) + mask[None, :, None]
            attn = attn.view(-1, heads, ws * ws, ws * ws)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b * nw, ws * ws, c)
        x = self.proj(x)
        x = x.view(b, ph // ws, pw // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, ph, pw, c)
        if sum(shift) > 0:
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :h, :w, :].contiguous()


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(dim, window, shift, heads)
        self.stochastic_depth = StochasticDepth(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        # torchvision's MLP: Linear, GELU, Dropout, Linear, Dropout (keys mlp.0 and mlp.3)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim),
            nn.Dropout(0.0),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens concatenated (padded to even sizes), LayerNorm, Linear 4C->2C."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-3:-1]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat(
            [x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :],
             x[..., 1::2, 1::2, :]], -1,
        )  # fmt: skip
        return self.reduction(self.norm(x))


class Swin(Backbone):
    """Swin Transformer v1 trunk returning the selected stages (NCHW).

    Args:
        size: ``"tiny"``, ``"small"`` or ``"base"`` (window 7, patch 4).
        out_stages: which of ``"c2"``..``"c5"`` forward returns.
        drop_path: stochastic depth of the last block (linear from 0); None: torchvision's
            ImageNet value (0.2 / 0.3 / 0.5).
        frozen_stages: -1 trains everything; k >= 0 freezes the patch embedding and stages
            1..k.
        num_classes: adds torchvision's ``head`` and forward also returns ``"logits"``.
    """

    lora_pattern = r"features\.[57]\.\d+\.(?:attn\.qkv|attn\.proj|mlp\.[03])"
    window = 7
    traces_any_size = False  # padding and the shift depend on each map's size

    def __init__(
        self,
        size: str = "tiny",
        out_stages: Sequence[str] = STAGE_NAMES,
        drop_path: float | None = None,
        frozen_stages: int = -1,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if size not in ARCHITECTURES:
            raise ValueError(f"size must be one of {sorted(ARCHITECTURES)}, got {size!r}")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [-1, 4], got {frozen_stages}")
        embed, depths, heads, default_drop = ARCHITECTURES[size]
        drop_path = default_drop if drop_path is None else float(drop_path)
        self.size = size
        self.out_stages = checked_out_stages(out_stages, STAGE_NAMES)
        self.frozen_stages = frozen_stages
        self.dropped: tuple[str, ...] = ()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, embed, 4, 4), Permute((0, 2, 3, 1)), nn.LayerNorm(embed))
        ]
        total, done = sum(depths), 0
        self.feature_info: OrderedDict[str, StageInfo] = OrderedDict()
        for i, (depth, nh) in enumerate(zip(depths, heads, strict=True)):
            dim = embed * 2**i
            blocks = [
                SwinBlock(dim, nh, self.window, 0 if j % 2 == 0 else self.window // 2,
                          drop_path * (done + j) / (total - 1))
                for j in range(depth)
            ]  # fmt: skip
            done += depth
            layers.append(nn.Sequential(*blocks))
            if i < len(depths) - 1:
                layers.append(PatchMerging(dim))
            self.feature_info[STAGE_NAMES[i]] = StageInfo(dim, 4 * 2**i)
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(embed * 8)
        self.num_classes = num_classes
        if num_classes is not None:
            self.head = nn.Linear(embed * 8, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for k in range(frozen_trunk_length(frozen_stages)):
            self.features[k].requires_grad_(False)

    @property
    def name(self) -> str:
        return f"swin_{self.size[0]}"

    @property
    def display_name(self) -> str:
        return f"Swin-{self.size[0].upper()}"

    def truncate(self, stage: str) -> None:
        if self.num_classes is not None:
            raise ValueError("a Swin with a classifier (num_classes) cannot be truncated")
        self.dropped += cut_after(self.features, "features", STAGE_INDEX, stage)
        if stage != "c5" and not isinstance(self.norm, nn.Identity):
            self.norm = nn.Identity()  # the final norm belongs to c5
            self.dropped += ("norm",)
        self.out_stages = tuple(s for s in self.out_stages if s <= stage) or (stage,)

    def param_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """The patch embedding, then every block (patch merging goes with the block after
        it, the final norm with the last block): layer-wise LR decay over the depth."""
        groups = [("patch_embed", ("features.0.",))]
        for i in range(4):
            index = 2 * i + 1
            stage = self.features[index]
            for j in range(len(stage) if isinstance(stage, nn.Sequential) else 0):
                prefixes = (f"features.{index}.{j}.",)
                if j == 0 and i > 0:
                    prefixes = (f"features.{index - 1}.", *prefixes)
                if i == 3 and j == len(stage) - 1:
                    prefixes = (*prefixes, "norm.")
                groups.append((f"stage{i + 1}.{j}", prefixes))
        return groups + ([("head", ("head.",))] if self.num_classes is not None else [])

    def adapt_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A torchvision (``features.*``) or timm (``patch_embed.*``, ``layers.*``) Swin state
        dict in this backbone's names, without the classifier (unless ``num_classes``) and
        dropped layers."""
        if "patch_embed.proj.weight" in state:
            state = timm_swin_to_torchvision(state, self.relative_position_keys())
        if "features.0.0.weight" not in state:
            raise foreign_keys_error(
                "Swin", "features.0.0.weight (torchvision) or patch_embed.proj.weight (timm)", state
            )
        keep = self.num_classes is not None
        return without_unheld(state, None if keep else "head", self.dropped)

    def relative_position_keys(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.endswith("relative_position_index")}

    def output_size(self, height: int, width: int, stage: str) -> tuple[int, int]:
        """floor(n / 4) after the patch embedding, then ceil(n / 2) per patch merging."""
        if stage not in STAGE_NAMES:
            raise ValueError(f"stage must be one of {STAGE_NAMES}, got {stage!r}")
        if height < 4 or width < 4:
            raise ValueError(f"input size must be >= 4, got {height}x{width}")
        h, w = height // 4, width // 4
        for _ in range(STAGE_NAMES.index(stage)):
            h, w = (h + 1) // 2, (w + 1) // 2
        return h, w

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Swin input must be [B, 3, H, W], got {list(x.shape)}")
        out: OrderedDict[str, Tensor] = OrderedDict()
        last = STAGE_INDEX["c5" if self.num_classes is not None else self.out_stages[-1]]
        for k in range(last + 1):
            stage = STAGE_AT.get(k)
            x = self.run_stage(stage, self.features[k], x)
            if stage == "c5":
                x = self.norm(x)
            if stage in self.out_stages:
                out[stage] = x.permute(0, 3, 1, 2)
        if self.num_classes is not None:
            out["logits"] = self.head(x.mean(dim=(1, 2)))
        return out


def timm_swin_to_torchvision(
    state: dict[str, Tensor], index_buffers: dict[str, Tensor]
) -> dict[str, Tensor]:
    """timm's Swin v1 names -> torchvision's. timm >= 0.9 puts patch merging at the start of
    stage i (``layers.i.downsample``), older timm at the end of stage i-1; both map to
    ``features.{2i}``. timm's ``attn_mask`` buffers are dropped; the relative position index
    (the same formula in both) comes from ``index_buffers``."""
    # older timm: stages 0..2 end with patch merging (layers.0.downsample exists)
    new_layout = not any(k.startswith("layers.0.downsample") for k in state)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.endswith(("attn_mask", "relative_position_index")):
            continue
        if parts[0] == "patch_embed":
            out[f"features.0.{0 if parts[1] == 'proj' else 2}.{parts[-1]}"] = value
        elif parts[0] == "layers" and parts[2] == "downsample":
            i = int(parts[1]) if new_layout else int(parts[1]) + 1
            out[f"features.{2 * i}.{'.'.join(parts[3:])}"] = value
        elif parts[0] == "layers" and parts[2] == "blocks":
            rest = ".".join(parts[4:]).replace("mlp.fc1", "mlp.0").replace("mlp.fc2", "mlp.3")
            out[f"features.{2 * int(parts[1]) + 1}.{parts[3]}.{rest}"] = value
        elif parts[0] == "norm":
            out[key] = value
        elif parts[0] == "head":
            out[f"head.{parts[-1]}"] = value
        else:
            raise ValueError(f"unknown timm Swin key {key!r} (shape {list(value.shape)})")
    for key, value in index_buffers.items():
        if key.split(".")[0] == "features" and f"{key.rsplit('.', 1)[0]}.qkv.weight" in out:
            out[key] = value
    return out
