"""Plain nn.Modules: backbones, necks, heads and detectors. No Lightning or Hydra imports."""

from visdet.models.backbones import FrozenBatchNorm2d, ResNet
from visdet.models.detectors import DetectionTransform, FasterRCNN, faster_rcnn_resnet_fpn
from visdet.models.heads import (
    RPN,
    FastRCNNPredictor,
    MultiScaleRoIAlign,
    RoIHeads,
    RPNHead,
    TwoMLPHead,
)
from visdet.models.necks import FPN

__all__ = [
    "FPN",
    "RPN",
    "DetectionTransform",
    "FastRCNNPredictor",
    "FasterRCNN",
    "FrozenBatchNorm2d",
    "MultiScaleRoIAlign",
    "RPNHead",
    "ResNet",
    "RoIHeads",
    "TwoMLPHead",
    "faster_rcnn_resnet_fpn",
]
