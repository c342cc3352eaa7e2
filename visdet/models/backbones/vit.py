"""Vision Transformer, ViT-S and ViT-B with patch 16 or 14 (Dosovitskiy et al. 2021), with
torchvision's state-dict layout.

Module names equal torchvision's ``vit_b_16`` (``conv_proj``, ``class_token``,
``encoder.pos_embedding``, ``encoder.layers.encoder_layer_i.{ln_1, self_attention, ln_2,
mlp}``, ``encoder.ln``, ``heads.head``), so a torchvision ImageNet checkpoint loads with
``strict=True``; ``adapt_state_dict`` also takes timm's ``vit_*`` checkpoints
(``patch_embed``, ``blocks.i``, ``cls_token``). torchvision has no ViT-S; its layout with
ViT-S's sizes (384 wide, 6 heads) is what timm's ``vit_small_patch16_224`` converts to.

One stage, ``tokens``: the encoder's output tokens after the final LayerNorm, class token
dropped, as ``[B, C, H / patch, W / patch]`` (stride = the patch size). Runs at any input
whose sides are multiples of the patch size: the position embeddings are resampled at run
time to the token grid (bicubic with antialiasing, in float32, as timm's
``resample_abs_pos_embed``); at the grid they were trained for they are used as they are.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from visdet.models.backbones.base import Backbone, StageInfo
from visdet.models.backbones.stochastic_depth import StochasticDepth
from visdet.models.backbones.truncation import foreign_keys_error

# (width, layers, heads, MLP width)
ARCHITECTURES = {"small": (384, 12, 6, 1536), "base": (768, 12, 12, 3072)}
STAGE = "tokens"


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names
    (``in_proj_weight``/``in_proj_bias`` for q, k, v; ``out_proj``), so torchvision's
    checkpoints load; computed with ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(x.transpose(1, 2).reshape(b, n, c))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, drop_path: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = SelfAttention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        # torchvision's MLPBlock: Linear, GELU, Dropout, Linear, Dropout (keys mlp.0, mlp.3)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, dim),
            nn.Dropout(0.0),
        )  # fmt: skip
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.stochastic_depth(self.self_attention(self.ln_1(x)))
        return x + self.stochastic_depth(self.mlp(self.ln_2(x)))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, layers: int, heads: int, dim: int, mlp_dim: int,
                 drop_path: float) -> None:  # fmt: skip
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim).normal_(std=0.02))
        self.layers = nn.Sequential(
            OrderedDict(
                (
                    f"encoder_layer_{i}",
                    EncoderBlock(dim, heads, mlp_dim, drop_path * i / max(layers - 1, 1)),
                )
                for i in range(layers)
            )
        )
        self.ln = nn.LayerNorm(dim, eps=1e-6)


def resample_position_embedding(
    pos: Tensor, grid: tuple[int, int], new: tuple[int, int], always: bool = False
) -> Tensor:
    """[1, 1 + gh*gw, C] embeddings (class token first) for a token grid of ``new`` size:
    the grid part resized bicubically with antialiasing in float32 (timm's rule). At the
    trained grid they are returned as they are, unless ``always`` (a graph being traced or
    exported for any size must contain the resampling)."""
    if not always and tuple(grid) == tuple(new):
        return pos
    cls, rest = pos[:, :1], pos[:, 1:]
    rest = rest.float().reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)
    rest = F.interpolate(rest, size=new, mode="bicubic", antialias=True, align_corners=False)
    rest = rest.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1).to(pos.dtype)
    return torch.cat([cls, rest], dim=1)


class ViT(Backbone):
    """ViT trunk returning its token map (stage ``tokens``).

    Args:
        size: ``"small"`` (ViT-S) or ``"base"`` (ViT-B).
        patch_size: 16 or 14 (any patch size the weights were trained with).
        image_size: the square input the position embeddings were trained for (224).
        drop_path: stochastic depth of the last block (linear from 0 at the first).
        frozen_stages: -1 trains everything; 0 freezes the patch embedding (and position
            embeddings and class token); k > 0 also freezes the first k blocks.
        num_classes: adds torchvision's ``heads.head`` on the class token; forward also
            returns ``"logits"``.
    """

    lora_pattern = r"encoder_layer_\d+\.(?:self_attention\.out_proj|mlp\.[03])$"

    def __init__(
        self,
        size: str = "base",
        patch_size: int = 16,
        image_size: int = 224,
        drop_path: float = 0.0,
        frozen_stages: int = -1,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if size not in ARCHITECTURES:
            raise ValueError(f"size must be one of {sorted(ARCHITECTURES)}, got {size!r}")
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(
                f"patch_size must divide image_size, got patch {patch_size}, image {image_size}"
            )
        dim, layers, heads, mlp_dim = ARCHITECTURES[size]
        if not -1 <= frozen_stages <= layers:
            raise ValueError(f"frozen_stages must be in [-1, {layers}], got {frozen_stages}")
        self.size, self.patch_size, self.image_size = size, patch_size, image_size
        self.grid = (image_size // patch_size, image_size // patch_size)
        self.hidden_dim = dim
        self.size_divisibility = patch_size
        self.out_stages = (STAGE,)
        self.feature_info = OrderedDict([(STAGE, StageInfo(dim, patch_size))])
        self.conv_proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = Encoder(
            self.grid[0] * self.grid[1] + 1, layers, heads, dim, mlp_dim, drop_path
        )
        fan_in = 3 * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        self.num_classes = num_classes
        if num_classes is not None:
            self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, num_classes)))
        self.frozen_stages = frozen_stages
        if frozen_stages >= 0:
            for p in (self.conv_proj.weight, self.conv_proj.bias, self.class_token,
                      self.encoder.pos_embedding):  # fmt: skip
                p.requires_grad_(False)
            for layer in list(self.encoder.layers)[:frozen_stages]:
                layer.requires_grad_(False)

    @property
    def name(self) -> str:
        return f"vit_{self.size[0]}{self.patch_size}"

    @property
    def display_name(self) -> str:
        return f"ViT-{self.size[0].upper()}/{self.patch_size}"

    def truncate(self, stage: str) -> None:
        if stage != STAGE:
            raise ValueError(f"stage must be one of ('{STAGE}',), got {stage!r}")
        if self.num_classes is not None:
            raise ValueError("a ViT with a classifier (num_classes) cannot be truncated")

    def param_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """The embeddings, then each encoder layer (the final LayerNorm with the last):
        ``mode: decay`` gives layer-wise LR decay (BEiT, ViTDet)."""
        groups = [("embed", ("conv_proj.", "class_token", "encoder.pos_embedding"))]
        n = len(self.encoder.layers)
        for i in range(n):
            prefixes: tuple[str, ...] = (f"encoder.layers.encoder_layer_{i}.",)
            groups.append((f"layer{i}", (*prefixes, "encoder.ln.") if i == n - 1 else prefixes))
        return groups + ([("head", ("heads.",))] if self.num_classes is not None else [])

    def adapt_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A torchvision (``conv_proj.*``) or timm (``patch_embed.*``) ViT state dict in this
        backbone's names, without the classifier (unless ``num_classes``). Position
        embeddings of another grid are resampled to this one (timm's rule)."""
        if "patch_embed.proj.weight" in state:
            state = timm_vit_to_torchvision(state)
        if "conv_proj.weight" not in state:
            raise foreign_keys_error(
                "ViT", "conv_proj.weight (torchvision) or patch_embed.proj.weight (timm)", state
            )
        state = dict(state)
        pos = state.get("encoder.pos_embedding")
        if pos is not None and pos.shape[1] != self.encoder.pos_embedding.shape[1]:
            side = math.isqrt(pos.shape[1] - 1)
            if side * side != pos.shape[1] - 1:
                raise ValueError(
                    f"encoder.pos_embedding {list(pos.shape)}: not a class token and a square grid"
                )
            state["encoder.pos_embedding"] = resample_position_embedding(
                pos, (side, side), self.grid
            )
        if self.num_classes is None:
            state = {k: v for k, v in state.items() if not k.startswith("heads.")}
        return state

    def output_size(self, height: int, width: int, stage: str) -> tuple[int, int]:
        if stage != STAGE:
            raise ValueError(f"stage must be one of ('{STAGE}',), got {stage!r}")
        self._check_size(height, width)
        return height // self.patch_size, width // self.patch_size

    def _check_size(self, height: int, width: int) -> None:
        p = self.patch_size
        if height < p or width < p or height % p or width % p:
            raise ValueError(
                f"ViT patch size {p} does not divide the input {height}x{width}: "
                f"use sides that are multiples of {p} "
                f"(e.g. {max(p, height // p * p)}x{max(p, width // p * p)})"
            )

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"ViT input must be [B, 3, H, W], got {list(x.shape)}")
        in_graph = torch.compiler.is_compiling() or torch.jit.is_tracing()
        if not in_graph:
            self._check_size(x.shape[2], x.shape[3])
        b = x.shape[0]
        x = self.conv_proj(x)
        h, w = x.shape[2], x.shape[3]
        tokens = x.flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(b, -1, -1), tokens], dim=1)
        pos = resample_position_embedding(self.encoder.pos_embedding, self.grid, (h, w), in_graph)
        tokens = self.encoder.ln(self.run_stage(STAGE, self.encoder.layers, tokens + pos))
        out: OrderedDict[str, Tensor] = OrderedDict()
        out[STAGE] = tokens[:, 1:].transpose(1, 2).reshape(b, self.hidden_dim, h, w)
        if self.num_classes is not None:
            out["logits"] = self.heads(tokens[:, 0])
        return out


def timm_vit_to_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm's ViT names -> torchvision's (``patch_embed.proj`` -> ``conv_proj``,
    ``cls_token`` -> ``class_token``, ``pos_embed`` -> ``encoder.pos_embedding``,
    ``blocks.i.attn.qkv`` -> ``...self_attention.in_proj_*``, ``norm`` -> ``encoder.ln``).
    Variants this layout cannot hold (layer scale, register tokens, no class token) are a
    ValueError naming the key."""
    simple = {"patch_embed.proj": "conv_proj", "norm": "encoder.ln", "head": "heads.head"}
    block = {"norm1": "ln_1", "norm2": "ln_2", "attn.proj": "self_attention.out_proj",
             "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3"}  # fmt: skip
    if "cls_token" not in state:
        raise ValueError("a timm ViT without a class token (cls_token) is not supported")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if key == "cls_token":
            out["class_token"] = value
        elif key == "pos_embed":
            out["encoder.pos_embedding"] = value
        elif module in simple:
            out[f"{simple[module]}.{leaf}"] = value
        elif key.startswith("blocks."):
            _, i, rest = key.split(".", 2)
            part, _, leaf = rest.rpartition(".")
            prefix = f"encoder.layers.encoder_layer_{i}"
            if part == "attn.qkv":
                out[f"{prefix}.self_attention.in_proj_{leaf}"] = value
            elif part in block:
                out[f"{prefix}.{block[part]}.{leaf}"] = value
            else:
                raise ValueError(f"unsupported timm ViT key {key!r} (shape {list(value.shape)})")
        elif key.startswith("fc_norm") or key.startswith("head_drop"):
            raise ValueError(
                f"unsupported timm ViT key {key!r}: global-pool ViTs are not supported"
            )
        else:
            raise ValueError(f"unsupported timm ViT key {key!r} (shape {list(value.shape)})")
    return out
