"""Mask R-CNN's benchmark components (``visdet bench``): its mask head and predictor on
14 x 14 RoI features sized like a ResNet-18 / FPN-128 detector's, beside Faster R-CNN's.
Registered through the family record (``MASK_RCNN.bench_components``)."""

from __future__ import annotations

import torch
from torch import nn

from visdet.models.detectors.family import BenchInput
from visdet.models.detectors.faster_rcnn_bench import FPN_CHANNELS, NUM_CLASSES
from visdet.models.heads.mask_head import MaskHead, MaskPredictor


def mask_head(batch_size: int, image_size: int, rois: int, device: str) -> BenchInput:
    head = MaskHead(FPN_CHANNELS, (FPN_CHANNELS,) * 4)
    module = nn.Sequential(head, MaskPredictor(FPN_CHANNELS, FPN_CHANNELS, NUM_CLASSES))
    x = torch.randn(rois, FPN_CHANNELS, 14, 14, generator=torch.Generator().manual_seed(6))
    return BenchInput(module, (x.to(device),), f"{rois}x{FPN_CHANNELS}x14x14", 0)


MASK_BENCH_COMPONENTS = {"roi/mask_head": ("roi", "rois", mask_head)}
