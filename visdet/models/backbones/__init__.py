"""Backbones: each implements the contract of ``base.Backbone`` (named stages, feature_info,
size_divisibility, truncate, parameter groups, foreign-checkpoint adaptation)."""

from visdet.models.backbones.base import Backbone, StageInfo
from visdet.models.backbones.frozen_batch_norm import FrozenBatchNorm2d
from visdet.models.backbones.resnet import ResNet

__all__ = ["Backbone", "FrozenBatchNorm2d", "ResNet", "StageInfo"]
