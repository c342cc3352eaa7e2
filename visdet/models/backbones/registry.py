"""Backbones by name: ``build_backbone("convnext_tiny", out_stages=[...])``.

Each name is one architecture with torchvision's state-dict layout (see each module), also
listed as ``conf/backbone/<name>.yaml`` for ``visdet train backbone=<name>``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from visdet.models.backbones.base import Backbone
from visdet.models.backbones.convnext import ConvNeXt
from visdet.models.backbones.mobilenet_v3 import MobileNetV3
from visdet.models.backbones.resnet import ResNet
from visdet.models.backbones.swin import Swin
from visdet.models.backbones.vit import ViT

BACKBONES: dict[str, Callable[..., Backbone]] = {
    **{f"resnet{d}": partial(ResNet, d) for d in (18, 34, 50, 101)},
    **{f"convnext_{s}": partial(ConvNeXt, s) for s in ("tiny", "small", "base")},
    **{f"swin_{s[0]}": partial(Swin, s) for s in ("tiny", "small", "base")},
    **{f"vit_{s[0]}{p}": partial(ViT, s, p) for s in ("small", "base") for p in (16, 14)},
    "mobilenet_v3_large": MobileNetV3,
}

# the variants ``visdet bench`` measures as ``backbone/<name>``: one of each family, the
# sizes a CPU run uses
BENCH_VARIANTS: dict[str, Callable[[], Backbone]] = {
    "resnet18": partial(ResNet, 18),
    "resnet50": partial(ResNet, 50),
    "convnext_tiny": partial(ConvNeXt, "tiny", drop_path=0.0),
    "swin_t": partial(Swin, "tiny", drop_path=0.0),
    "vit_s16": partial(ViT, "small", 16),
    "mobilenet_v3_large": partial(MobileNetV3, out_stages=("c2", "c3", "c4", "c5")),
}


def build_backbone(name: str, **kwargs) -> Backbone:
    """The backbone called ``name`` with ``kwargs``; an unknown name is a ValueError listing
    the known ones."""
    if name not in BACKBONES:
        raise ValueError(
            f"backbone {name!r} does not exist; known backbones: {', '.join(BACKBONES)}"
        )
    return BACKBONES[name](**kwargs)
