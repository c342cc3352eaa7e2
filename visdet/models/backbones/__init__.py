"""Backbones: each implements the contract of ``base.Backbone`` (named stages, feature_info,
size_divisibility, truncate, parameter groups, foreign-checkpoint adaptation); by name in
``registry``."""

from visdet.models.backbones.base import Backbone, StageInfo
from visdet.models.backbones.convnext import ConvNeXt
from visdet.models.backbones.frozen_batch_norm import FrozenBatchNorm2d
from visdet.models.backbones.mobilenet_v3 import MobileNetV3
from visdet.models.backbones.registry import BACKBONES, build_backbone
from visdet.models.backbones.resnet import ResNet
from visdet.models.backbones.swin import Swin
from visdet.models.backbones.vit import ViT

__all__ = [
    "BACKBONES",
    "Backbone",
    "ConvNeXt",
    "FrozenBatchNorm2d",
    "MobileNetV3",
    "ResNet",
    "StageInfo",
    "Swin",
    "ViT",
    "build_backbone",
]
