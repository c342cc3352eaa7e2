"""Initialise a detector or its backbone from pretrained weights: a path or URL (fetched
once into the local cache, see visdet.models.weights_cache), in any of the formats below,
converted by key mapping and loaded with a printed summary (visdet.models.state_loading).

Detector formats (``model.init_from``), recognised by their keys:

- ``visdet``: a visdet training checkpoint (``.ckpt``, keys ``detector.*``), or a bare
  detector state dict (``backbone.*``, ``neck.*``, ``rpn.*``, ``roi_heads.*``);
- ``torchvision``: a ``fasterrcnn_resnet50_fpn`` / ``_v2`` state dict (``backbone.body.*``);
- ``mmdet``: an MMDetection Faster R-CNN R50-FPN checkpoint (``rpn_head.*``, ``roi_head.*``).

When the number of classes differs from the checkpoint's, the class-specific layers (the
box predictor's class scores and per-class box deltas) keep their fresh initialisation and
the summary says so.

Backbone formats (``model.backbone.weights``, ``encoder.init_from``): a torchvision ResNet
ImageNet state dict (``conv1.weight``, ``layer1.0.conv1.weight``, ..., ``fc.*``) or the
backbone of a visdet detector or encoder checkpoint, loaded strictly; the ImageNet
classifier ``fc.*`` is not part of a backbone and is skipped.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

from visdet.models.checkpoint_state import read_state_dict
from visdet.models.detectors.mmdet_keys import faster_rcnn_from_mmdet, mmdet_settings_mismatch
from visdet.models.detectors.torchvision_keys import faster_rcnn_from_torchvision
from visdet.models.state_loading import LoadReport, load_state
from visdet.models.weights_cache import resolve_weights

log = logging.getLogger(__name__)

CLASS_SPECIFIC = ("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred.")
DETECTOR_PARTS = ("backbone.", "neck.", "rpn.", "roi_heads.")
BACKBONE_PREFIXES = ("detector.backbone.", "encoder.backbone.", "backbone.")


def _read(path_or_url: str, key: str) -> dict[str, Tensor]:
    """The state dict at a path or (cached) URL; errors name the config ``key``."""
    return read_state_dict(str(resolve_weights(path_or_url, key)), key)


def checkpoint_format(state: dict[str, Tensor]) -> str:
    """``visdet``, ``visdet_detector`` (a bare detector state dict), ``torchvision`` or
    ``mmdet``; ValueError naming the first keys for anything else."""
    keys = list(state)
    if any(k.startswith("detector.") for k in keys):
        return "visdet"
    if any(k.startswith("backbone.body.") for k in keys):
        return "torchvision"
    if any(k.startswith(("roi_head.", "rpn_head.")) for k in keys):
        return "mmdet"
    if any(k.startswith("neck.") for k in keys) and all(k.startswith(DETECTOR_PARTS) for k in keys):
        return "visdet_detector"
    raise ValueError(
        "unknown checkpoint format: expected a visdet checkpoint (detector.*), a torchvision "
        "Faster R-CNN state dict (backbone.body.*) or an MMDetection Faster R-CNN checkpoint "
        f"(roi_head.*, rpn_head.*); first keys: {keys[:5]}"
    )


def detector_weights(state: dict[str, Tensor], fmt: str) -> dict[str, Tensor]:
    """The state dict in visdet's detector keys."""
    if fmt == "visdet":
        return {k[len("detector.") :]: v for k, v in state.items() if k.startswith("detector.")}
    if fmt == "torchvision":
        return faster_rcnn_from_torchvision(state)
    if fmt == "mmdet":
        return faster_rcnn_from_mmdet(state)
    return dict(state)


def init_detector(
    detector: nn.Module, path_or_url: str, strict: bool = True, key: str = "model.init_from"
) -> LoadReport:
    """Load ``path_or_url`` (any format above) into ``detector``; logs the summary."""
    state = _read(path_or_url, key)
    try:
        fmt = checkpoint_format(state)
        weights = detector_weights(state, fmt)
    except ValueError as e:
        raise ValueError(f"{key}: {path_or_url}: {e}") from None
    report = load_state(
        detector,
        weights,
        f"{key}: {path_or_url} ({fmt} format)",
        strict=strict,
        reinit_prefixes=CLASS_SPECIFIC,
        strict_key="model.init_strict",
    )
    log.info("%s", report.summary())
    if fmt == "mmdet":
        for difference in mmdet_settings_mismatch(detector):
            log.warning("%s: the detector differs from MMDetection's settings: %s", key, difference)
    return report


def backbone_weights(state: dict[str, Tensor]) -> tuple[str, dict[str, Tensor]]:
    """(prefix, backbone tensors): the ``backbone`` part of a visdet detector or encoder
    checkpoint, or a torchvision ResNet ImageNet state dict as it is (prefix ``""``)."""
    for prefix in BACKBONE_PREFIXES:
        weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if weights:
            return prefix, weights
    if "conv1.weight" in state:
        return "", dict(state)
    raise ValueError(
        f"no backbone weights: expected a torchvision ResNet state dict (conv1.*, layer1.*, "
        f"...) or keys starting with {list(BACKBONE_PREFIXES)}; first keys: {list(state)[:5]}"
    )


def init_backbone(
    backbone: nn.Module, path_or_url: str, key: str = "model.backbone.weights"
) -> LoadReport:
    """Load a ResNet backbone, strictly, from a torchvision ImageNet checkpoint or the
    backbone of a visdet detector/encoder checkpoint; an ImageNet classifier ``fc.*`` and
    layers this backbone dropped (an encoder cut at a stage) are skipped."""
    state = _read(path_or_url, key)
    try:
        prefix, weights = backbone_weights(state)
    except ValueError as e:
        raise ValueError(f"{key}: {path_or_url}: {e}") from None
    skipped = ("fc", *getattr(backbone, "dropped", ()))
    report = load_state(
        backbone,
        weights,
        f"{key}: {path_or_url}" + (f" ({prefix}*)" if prefix else ""),
        strict=True,
        ignore_unexpected=lambda k: k.split(".")[0] in skipped,
    )
    log.info("%s", report.summary())
    return report
