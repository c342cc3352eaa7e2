"""The detector families and backbones visdet knows: one line each.

A family's record (``DetectorFamily``) lives in its own file; listing it here is what makes
weight loading, parameter groups, LoRA defaults, the benchmark and the contract tests see it.
"""

from __future__ import annotations

from torch import nn

from visdet.models.backbones import registry
from visdet.models.detectors.atss import ATSS_FAMILY
from visdet.models.detectors.family import DetectorFamily
from visdet.models.detectors.faster_rcnn import FASTER_RCNN
from visdet.models.detectors.fcos import FCOS_FAMILY
from visdet.models.detectors.mask_rcnn import MASK_RCNN
from visdet.models.detectors.retinanet import RETINANET

DETECTOR_FAMILIES: tuple[DetectorFamily, ...] = (
    FASTER_RCNN, RETINANET, FCOS_FAMILY, ATSS_FAMILY, MASK_RCNN,
)  # fmt: skip

# "name" -> a backbone built with its defaults, measured by ``visdet bench`` (backbone/<name>)
BENCH_BACKBONES = {**registry.BENCH_VARIANTS}


def family_of(detector: nn.Module) -> DetectorFamily:
    """The registered family of ``detector``'s class, or of its nearest registered base class
    (a MaskRCNN is a FasterRCNN, and Mask R-CNN's family)."""
    for cls in type(detector).__mro__:
        for family in DETECTOR_FAMILIES:
            if family.detector is cls:
                return family
    names = ", ".join(f.detector.__name__ for f in DETECTOR_FAMILIES)
    raise TypeError(f"{type(detector).__name__} is not a registered detector family ({names})")


def predicts_masks(detector: nn.Module) -> bool:
    """Whether ``detector`` returns instance ``masks`` with its detections (its head outputs
    include mask logits: Mask R-CNN; a module running an exported file says so with its
    ``predicts_masks`` attribute)."""
    declared = getattr(detector, "predicts_masks", None)
    if isinstance(declared, bool):
        return declared
    return "mask_logits" in getattr(type(detector), "HEAD_OUTPUTS", ())
