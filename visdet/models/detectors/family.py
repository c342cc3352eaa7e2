"""What a detector family knows about itself, in one record next to its module.

Weight loading, parameter groups, LoRA defaults, benchmarks and the contract tests read a
family's record instead of hard-coding its module names; a new family writes its record in its
own file and adds one line to ``visdet.models.families.DETECTOR_FAMILIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from torch import Tensor, nn

# torchvision's GeneralizedRCNNTransform and MMDetection's test pipeline (Resize 1333x800,
# keep_ratio): short side 800, long side at most 1333, bilinear without antialiasing
DEFAULT_PREPROCESSING = {"min_size": 800, "max_size": 1333, "antialias": False}


@dataclass(frozen=True)
class Converter:
    """A foreign checkpoint format the family reads.

    Attributes:
        name: the format's name in load summaries (``torchvision``, ``mmdet``).
        framework: the source framework's name in messages (``torchvision``, ``MMDetection``).
        describe: what the file holds, for error messages (``a torchvision Faster R-CNN
            state dict (backbone.body.*)``).
        matches: recognises the format from a state dict's keys.
        convert: the state dict in the family's visdet parameter names.
        check: settings of a built detector that differ from the source framework's (each
            logged as a warning after loading); None = nothing to check.
        preprocessing: the source framework's inference resize, applied to each image before
            a detector loaded from this format (visdet.inference): ``min_size`` (short side),
            ``max_size`` (long side cap), ``antialias``; default torchvision's and
            MMDetection's 800/1333 without antialiasing.
    """

    name: str
    framework: str
    describe: str
    matches: Callable[[dict[str, Tensor]], bool]
    convert: Callable[[dict[str, Tensor]], dict[str, Tensor]]
    check: Callable[[nn.Module], list[str]] | None = None
    preprocessing: dict[str, object] = field(default_factory=lambda: dict(DEFAULT_PREPROCESSING))


class BenchInput(NamedTuple):
    """A module and the arguments one benchmark call passes it."""

    module: nn.Module
    args: tuple
    input: str  # what the inputs are, e.g. "p2..p5 of 2x3x64x64"
    images: int  # images per call (for images/s); 0 = not image-based


# (batch_size, image_size, rois, device) -> BenchInput
BenchBuilder = Callable[[int, int, int, str], BenchInput]


@dataclass(frozen=True)
class DetectorFamily:
    """One detector family's knowledge.

    Attributes:
        name: the family's name (its config: ``conf/model/<name>.yaml``).
        detector: the detector class (``family_of`` matches instances by it).
        presets: the named, tested settings in ``conf/model/`` (the family config included).
        head_groups: LR groups after the backbone's, shallowest first:
            ``(group name, (parameter-name prefixes, ...))``, e.g. neck, rpn, heads.
        lora_pattern: regular expression on module names of the head-side layers LoRA adapts
            by default (the backbone adds its own ``lora_pattern``).
        lora_train_modules: modules trained fully under LoRA (e.g. the class predictor).
        class_specific: parameter prefixes that depend on the number of classes (kept fresh
            when a checkpoint has another class count).
        converters: foreign checkpoint formats (``model.init_from``).
        bench_components: ``{"group/name": (group, axis, builder)}`` for ``visdet bench``
            (axis: the setting the component varies, ``"image"`` or ``"rois"``).
    """

    name: str
    detector: type[nn.Module]
    presets: tuple[str, ...]
    head_groups: tuple[tuple[str, tuple[str, ...]], ...]
    lora_pattern: str
    lora_train_modules: tuple[str, ...] = ()
    class_specific: tuple[str, ...] = ()
    converters: tuple[Converter, ...] = ()
    bench_components: dict[str, tuple[str, str, BenchBuilder]] = field(default_factory=dict)
