"""Faster R-CNN's benchmark components (``visdet bench``): its RPN head, RoI extractor and
box head on random inputs sized like a ResNet-18 / FPN-128 detector's at a given image size.
Registered through the family record (``FASTER_RCNN.bench_components``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visdet.models.detectors.family import BenchInput
from visdet.models.heads.multiscale_roi_align import MultiScaleRoIAlign
from visdet.models.heads.roi_heads import FastRCNNPredictor, TwoMLPHead
from visdet.models.heads.rpn import RPNHead

FPN_CHANNELS = 128
NUM_CLASSES = 4
LEVELS = ("p2", "p3", "p4", "p5")


def _pyramid(batch_size: int, image_size: int, device: str, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(
            batch_size, FPN_CHANNELS, max(1, image_size // 2 ** (i + 2)),
            max(1, image_size // 2 ** (i + 2)), generator=g,
        ).to(device)
        for i, name in enumerate(LEVELS)
    }  # fmt: skip


def random_rois(count: int, image: int, seed: int) -> Tensor:
    """``count`` boxes xyxy inside an ``image`` x ``image`` canvas, sides >= 2."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(count, 2, generator=g) * image * 0.8
    wh = torch.rand(count, 2, generator=g) * image * 0.4 + 2
    return torch.cat([xy, xy + wh], 1)


def _image(batch_size: int, image_size: int) -> str:
    return f"{batch_size}x3x{image_size}x{image_size}"


def rpn_head(batch_size: int, image_size: int, rois: int, device: str) -> BenchInput:
    feats = list(_pyramid(batch_size, image_size, device, 2).values())
    return BenchInput(
        RPNHead(FPN_CHANNELS, 3),
        (feats,),
        f"p2..p5 of {_image(batch_size, image_size)}",
        batch_size,
    )


def roi_extractor(batch_size: int, image_size: int, rois: int, device: str) -> BenchInput:
    feats = _pyramid(batch_size, image_size, device, 3)
    for f in feats.values():
        f.requires_grad_(True)
    per_image = max(1, rois // batch_size)
    boxes = [random_rois(per_image, image_size, 4 + i).to(device) for i in range(batch_size)]
    return BenchInput(
        MultiScaleRoIAlign(LEVELS, 7, 2),
        (feats, boxes, (image_size, image_size)),
        f"{per_image * batch_size} RoIs on p2..p5 of {_image(batch_size, image_size)}",
        0,
    )


def box_head(batch_size: int, image_size: int, rois: int, device: str) -> BenchInput:
    head = nn.Sequential(TwoMLPHead(FPN_CHANNELS * 49, 256), FastRCNNPredictor(256, NUM_CLASSES))
    x = torch.randn(rois, FPN_CHANNELS, 7, 7, generator=torch.Generator().manual_seed(5))
    return BenchInput(head, (x.to(device),), f"{rois}x{FPN_CHANNELS}x7x7", 0)


# "group/name" -> (group, the setting axis it varies: "image" | "rois", builder)
BENCH_COMPONENTS = {
    "dense_head/rpn_head": ("dense_head", "image", rpn_head),
    "roi/extractor": ("roi", "image", roi_extractor),
    "roi/box_head": ("roi", "rois", box_head),
}
