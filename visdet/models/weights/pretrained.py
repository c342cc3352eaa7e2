"""Initialise a detector or its backbone from pretrained weights: a path or URL (fetched
once into the local cache, see visdet.models.weights.cache), in any of the formats below,
converted by key mapping and loaded with a printed summary (visdet.models.weights.state_loading).

Detector formats (``model.init_from``), recognised by their keys:

- ``visdet``: a visdet training checkpoint (``.ckpt``, keys ``detector.*``), or a bare
  detector state dict (keys under the detector's own modules: ``backbone.*``, ``neck.*``, ...);
- the foreign formats of the detector's family (its record's ``converters``; Faster R-CNN:
  torchvision ``fasterrcnn_resnet50_fpn`` / ``_v2`` and MMDetection Faster R-CNN R50-FPN).

When the number of classes differs from the checkpoint's, the family's class-specific layers
(Faster R-CNN: the box predictor's class scores and per-class box deltas) keep their fresh
initialisation and the summary says so.

Backbone formats (``model.backbone.weights``, ``encoder.init_from``): the backbone of a visdet
detector or encoder checkpoint, or a foreign checkpoint the backbone adapts itself
(``Backbone.adapt_state_dict``; ResNet: a torchvision ImageNet state dict, whose classifier
``fc.*`` is skipped), loaded strictly.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

from visdet.models.backbones.base import Backbone
from visdet.models.detectors.family import DetectorFamily
from visdet.models.families import family_of
from visdet.models.weights.cache import is_url, resolve_weights
from visdet.models.weights.checkpoint_state import read_state_dict
from visdet.models.weights.state_loading import LoadReport, load_state

log = logging.getLogger(__name__)

BACKBONE_PREFIXES = ("detector.backbone.", "encoder.backbone.", "backbone.")


def _read(path_or_url: str, key: str, allow_pickle: bool, allow_pickle_key: str) -> dict:
    """The state dict at a path or (cached) URL, never unpickling code unless a local file is
    opted in with ``allow_pickle``; errors name the config ``key``."""
    if allow_pickle and is_url(path_or_url):
        raise ValueError(
            f"{key}: {allow_pickle_key}=true applies to local files only, never to URLs "
            f"({path_or_url}); download and check the file first"
        )
    local = str(resolve_weights(path_or_url, key))
    return read_state_dict(local, key, allow_pickle, allow_pickle_key)


def checkpoint_format(state: dict[str, Tensor], detector: nn.Module) -> str:
    """``visdet``, ``visdet_detector`` (a bare detector state dict) or the name of one of the
    family's converters; ValueError naming the first keys for anything else."""
    keys = list(state)
    if any(k.startswith("detector.") for k in keys):
        return "visdet"
    family = family_of(detector)
    for converter in family.converters:
        if converter.matches(state):
            return converter.name
    parts = tuple(f"{name}." for name, _ in detector.named_children())
    if keys and all(k.startswith(parts) for k in keys):
        return "visdet_detector"
    expected = "; ".join(c.describe for c in family.converters)
    raise ValueError(
        "unknown checkpoint format: expected a visdet checkpoint (detector.*), a bare "
        f"{type(detector).__name__} state dict"
        + (f" or {expected}" if expected else "")
        + f"; first keys: {keys[:5]}"
    )


def detector_weights(state: dict[str, Tensor], fmt: str, family: DetectorFamily) -> dict:
    """The state dict in visdet's detector keys."""
    if fmt == "visdet":
        return {k[len("detector.") :]: v for k, v in state.items() if k.startswith("detector.")}
    if fmt == "visdet_detector":
        return dict(state)
    return next(c for c in family.converters if c.name == fmt).convert(state)


def init_detector(
    detector: nn.Module,
    path_or_url: str,
    strict: bool = True,
    key: str = "model.init_from",
    allow_pickle: bool = False,
    allow_pickle_key: str = "model.trust_pickled_weights",
) -> LoadReport:
    """Load ``path_or_url`` (any format above) into ``detector``; logs the summary."""
    state = _read(path_or_url, key, allow_pickle, allow_pickle_key)
    return load_detector_state(detector, state, path_or_url, strict, key)[0]


def load_detector_state(
    detector: nn.Module,
    state: dict[str, Tensor],
    source: str,
    strict: bool = True,
    key: str = "model.init_from",
) -> tuple[LoadReport, str]:
    """``init_detector`` of a state dict already read from ``source`` (a path or URL, for
    messages); returns the report and the format that matched (``checkpoint_format``)."""
    family = family_of(detector)
    try:
        fmt = checkpoint_format(state, detector)
        weights = detector_weights(state, fmt, family)
    except ValueError as e:
        raise ValueError(f"{key}: {source}: {e}") from None
    report = load_state(
        detector,
        weights,
        f"{key}: {source} ({fmt} format)",
        strict=strict,
        reinit_prefixes=family.class_specific,
        strict_key="model.init_strict",
    )
    log.info("%s", report.summary())
    converter = next((c for c in family.converters if c.name == fmt), None)
    if converter is not None and converter.check is not None:
        for difference in converter.check(detector):
            log.warning(
                "%s: the detector differs from %s's settings: %s",
                key,
                converter.framework,
                difference,
            )
    return report, fmt


def backbone_weights(state: dict[str, Tensor], backbone: Backbone) -> tuple[str, dict]:
    """(prefix, backbone tensors): the ``backbone`` part of a visdet detector or encoder
    checkpoint, or a foreign checkpoint adapted by the backbone itself (prefix ``""``)."""
    for prefix in BACKBONE_PREFIXES:
        weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if weights:
            return prefix, weights
    try:
        return "", backbone.adapt_state_dict(state)
    except ValueError as e:
        raise ValueError(
            f"no backbone weights: {e}; or keys starting with {list(BACKBONE_PREFIXES)}"
        ) from None


def init_backbone(
    backbone: Backbone,
    path_or_url: str,
    key: str = "model.backbone.weights",
    allow_pickle: bool = False,
    allow_pickle_key: str = "model.trust_pickled_weights",
) -> LoadReport:
    """Load a backbone, strictly, from the backbone of a visdet detector/encoder checkpoint
    or a foreign checkpoint it adapts (ResNet: torchvision ImageNet); layers this backbone
    dropped (an encoder cut at a stage) are skipped."""
    if not isinstance(backbone, Backbone):
        raise TypeError(
            f"{key}: {type(backbone).__name__} does not implement the backbone contract"
        )
    state = _read(path_or_url, key, allow_pickle, allow_pickle_key)
    try:
        prefix, weights = backbone_weights(state, backbone)
    except ValueError as e:
        raise ValueError(f"{key}: {path_or_url}: {e}") from None
    report = load_state(
        backbone,
        weights,
        f"{key}: {path_or_url}" + (f" ({prefix}*)" if prefix else ""),
        strict=True,
        ignore_unexpected=backbone.is_dropped,
    )
    log.info("%s", report.summary())
    return report
