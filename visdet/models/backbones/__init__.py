from visdet.models.backbones.frozen_batch_norm import FrozenBatchNorm2d
from visdet.models.backbones.resnet import ResNet

__all__ = ["FrozenBatchNorm2d", "ResNet"]
