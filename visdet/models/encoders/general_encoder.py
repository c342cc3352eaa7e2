"""An image encoder: a visdet backbone cut at one stage, images in, one feature map out.

The input resolution is configuration (``input_shape``, default 3x224x224): it is used to
report shapes, to make example inputs for export and as the spec's declared input, but it is
not baked into the module: a convolutional encoder runs at any height and width.
Mean/std normalisation happens inside (DESIGN: exported models take plain [0, 1] images).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from visdet.models.backbones.base import Backbone
from visdet.models.backbones.registry import build_backbone
from visdet.models.backbones.resnet import ResNet
from visdet.models.weights.pretrained import init_backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class GeneralEncoder(nn.Module):
    """images [B, 3, H, W] in [0, 1] -> features [B, C, h, w] of ``stage``.

    Args:
        backbone: any backbone implementing the contract (visdet.models.backbones.base), or
            a registered name (``"convnext_tiny"``, ``"vit_s16"``, see
            ``visdet.models.backbones.BACKBONES``); None builds ``ResNet(depth, norm=norm)``.
        stage: which backbone output is the feature map (``"c2"``..``"c5"`` for ResNet,
            ``"tokens"`` for ViT); ``"last"`` names the backbone's last stage.
        input_shape: (C, H, W) the encoder is declared for (default 3x224x224).
        depth, norm: used only when ``backbone`` is None.
        init_from: a path or URL whose backbone weights to load (a DetectorModule or
            EncoderModule ``.ckpt``, a state dict with ``backbone.*`` keys, or a torchvision
            ResNet ImageNet state dict, or a .safetensors file); see
            visdet.models.weights.pretrained.init_backbone. Read without unpickling code.
        trust_pickled_weights: read a local ``init_from`` that also holds numpy data (your
            own older file; logs a warning; never for URLs); nothing that could run code.
    """

    def __init__(
        self,
        backbone: Backbone | str | None = None,
        stage: str = "c5",
        input_shape: Sequence[int] = (3, 224, 224),
        depth: int = 18,
        norm: str = "bn",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        init_from: str | None = None,
        trust_pickled_weights: bool = False,
    ) -> None:
        super().__init__()
        built_here = backbone is None or isinstance(backbone, str)
        if backbone is None:
            backbone = ResNet(depth=depth, norm=norm)
        elif isinstance(backbone, str):
            backbone = build_backbone(backbone)
        if not isinstance(backbone, Backbone):
            raise TypeError(
                f"backbone {type(backbone).__name__} does not implement the backbone contract "
                "(visdet.models.backbones.Backbone)"
            )
        stage = backbone.resolve_stage(stage, "encoder.stage")
        if built_here:
            backbone.out_stages = (stage,)
        if stage not in backbone.out_stages:
            raise ValueError(f"the backbone does not return stage {stage!r}; add it to out_stages")
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or input_shape[0] != 3 or min(input_shape) < 1:
            raise ValueError(
                f"input_shape must be (3, H, W) with H, W >= 1, got {list(input_shape)}"
            )
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values with std > 0, got {mean}, {std}")
        backbone.truncate(stage)  # later stages would only add unused weights
        self.backbone = backbone
        self.stage = stage
        self.input_shape = input_shape
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        if init_from:
            init_backbone(
                self.backbone,
                init_from,
                key="encoder.init_from",
                allow_pickle=trust_pickled_weights,
                allow_pickle_key="encoder.trust_pickled_weights",
            )

    def param_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """The backbone's layer groups (discriminative LRs), under ``backbone.``."""
        return [(n, tuple(f"backbone.{p}" for p in ps)) for n, ps in self.backbone.param_groups()]

    @property
    def out_channels(self) -> int:
        return int(self.backbone.out_channels[self.stage])

    def output_shape(self, input_shape: Sequence[int] | None = None) -> tuple[int, int, int]:
        """(C, h, w) of the features for an input (3, H, W) (default: the declared one)."""
        shape = tuple(int(s) for s in (input_shape or self.input_shape))
        if len(shape) != 3 or shape[0] != 3 or min(shape) < 1:
            raise ValueError(f"input shape must be (3, H, W) with H, W >= 1, got {list(shape)}")
        h, w = self.backbone.output_size(shape[1], shape[2], self.stage)
        return (self.out_channels, h, w)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"encoder input must be [B, 3, H, W], got {list(images.shape)}")
        return self.backbone((images - self.mean) / self.std)[self.stage]
