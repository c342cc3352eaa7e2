"""The one-stage families' benchmark components (``visdet bench``): each family's dense head
on random P3-P7 maps of an FPN-128 for a given image size (``dense_head/<family>_head``), and
its training losses (anchor assignment + loss terms) on random head outputs with four boxes
per image (``loss/<family>``). Registered through the family records."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from visdet.models.detectors.family import BenchInput

FPN_CHANNELS = 128
NUM_CLASSES = 4
STRIDES = (8, 16, 32, 64, 128)
BOXES_PER_IMAGE = 4


def _levels(batch_size: int, image_size: int, device: str, seed: int) -> list[Tensor]:
    g = torch.Generator().manual_seed(seed)
    sides = [max(1, -(-image_size // s)) for s in STRIDES]
    return [torch.randn(batch_size, FPN_CHANNELS, n, n, generator=g).to(device) for n in sides]


def _targets(batch_size: int, image_size: int, device: str) -> list[dict[str, Tensor]]:
    g = torch.Generator().manual_seed(11)
    out = []
    for _ in range(batch_size):
        xy = torch.rand(BOXES_PER_IMAGE, 2, generator=g) * image_size * 0.6
        wh = torch.rand(BOXES_PER_IMAGE, 2, generator=g) * image_size * 0.35 + 4
        labels = torch.randint(1, NUM_CLASSES + 1, (BOXES_PER_IMAGE,), generator=g)
        out.append({"boxes": torch.cat([xy, xy + wh], 1).to(device), "labels": labels.to(device)})
    return out


def bench_backbone_and_neck(channels: int) -> tuple[nn.Module, Callable[..., nn.Module]]:
    """The benchmark detectors' ResNet-18 (BatchNorm) and FPN P3-P7 of ``channels``."""
    from visdet.models.backbones.resnet import ResNet
    from visdet.models.necks.fpn import FPN

    neck = partial(FPN, in_features=("c3", "c4", "c5"), out_channels=channels,
                   extra_blocks="p6p7")  # fmt: skip
    return ResNet(18, norm="bn"), neck


class _Losses(nn.Module):
    """A detector's ``losses`` on fixed head outputs (the parameters, so backward times the
    loss' own graph)."""

    def __init__(self, detector: nn.Module, outputs: dict[str, Tensor], anchors, targets):
        super().__init__()
        self.outputs = nn.ParameterDict({k: nn.Parameter(v.detach()) for k, v in outputs.items()})
        self._detector = [detector]  # not a submodule: only the loss is measured
        self.anchors, self.targets = anchors, targets

    def forward(self) -> dict[str, Tensor]:
        return self._detector[0].losses(dict(self.outputs), self.anchors, self.targets)


def dense_bench_components(
    family: str, make: Callable[[int, int], nn.Module]
) -> dict[str, tuple[str, str, Callable]]:
    """``{"dense_head/<family>_head", "loss/<family>"}`` components of a family whose
    ``make(num_classes, fpn_channels)`` builds a small detector (P3-P7)."""

    def head(batch_size: int, image_size: int, rois: int, device: str) -> BenchInput:
        detector = make(NUM_CLASSES, FPN_CHANNELS)
        feats = _levels(batch_size, image_size, device, 21)
        return BenchInput(detector.head, (feats,),
                          f"p3..p7 of {batch_size}x3x{image_size}x{image_size}",
                          batch_size)  # fmt: skip

    def loss(batch_size: int, image_size: int, rois: int, device: str) -> BenchInput:
        detector = make(NUM_CLASSES, FPN_CHANNELS).to(device)
        feats = _levels(batch_size, image_size, device, 22)
        with torch.no_grad():
            outputs = detector.head(feats)
        sizes = [tuple(f.shape[-2:]) for f in feats]
        padded = (sizes[0][0] * STRIDES[0], sizes[0][1] * STRIDES[0])
        anchors = detector.anchor_generator(padded, sizes, feats[0].dtype, feats[0].device)
        module = _Losses(detector, outputs, anchors, _targets(batch_size, image_size, device))
        return BenchInput(module, (), f"{batch_size} images of {image_size}, "
                          f"{BOXES_PER_IMAGE} boxes each, {sum(len(a) for a in anchors)} "
                          "anchors", batch_size)  # fmt: skip

    return {
        f"dense_head/{family}_head": ("dense_head", "image", head),
        f"loss/{family}": ("loss", "image", loss),
    }
