"""The settings of each optional augmentation of ``DetectionAugment`` (the ``aug.*`` config
dicts), checked when the augmentation is built: an unknown key or a value out of range is a
one-line ValueError naming ``aug.<name>.<key>``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass


def check_range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """``(a, b)`` with ``low <= a <= b <= high``, or a ValueError naming ``name``."""
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must be [min, max] within [{low}, {high}], got {list(value)}")
    return float(value[0]), float(value[1])


def _probability(name: str, p: float) -> float:
    if not 0 <= p <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return float(p)


def _epochs(name: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {n!r}")
    return n


@dataclass
class MosaicSettings:
    """p: probability per image; center: range of the centre as a fraction of the canvas
    side; off_last_epochs: no mosaic in the last N epochs (Ultralytics' ``close_mosaic``)."""

    p: float = 1.0
    center: Sequence[float] = (0.0, 1.0)
    off_last_epochs: int = 0

    def __post_init__(self) -> None:
        self.p = _probability("aug.mosaic.p", self.p)
        self.center = check_range("aug.mosaic.center", self.center, 0.0, 1.0)
        self.off_last_epochs = _epochs("aug.mosaic.off_last_epochs", self.off_last_epochs)


@dataclass
class MixupSettings:
    """p: probability per image; alpha: None for a fixed 0.5 weight (YOLOX), else
    Beta(alpha, alpha); off_last_epochs: no mixup in the last N epochs."""

    p: float = 0.15
    alpha: float | None = None
    off_last_epochs: int = 0

    def __post_init__(self) -> None:
        self.p = _probability("aug.mixup.p", self.p)
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"aug.mixup.alpha must be > 0 or null, got {self.alpha}")
        self.off_last_epochs = _epochs("aug.mixup.off_last_epochs", self.off_last_epochs)


@dataclass
class JitterSettings:
    """scale: range of the factor relative to fitting the square; p: probability per image."""

    scale: Sequence[float] = (0.1, 2.0)
    p: float = 1.0

    def __post_init__(self) -> None:
        self.scale = check_range("aug.large_scale_jitter.scale", self.scale, 1e-3, 100.0)
        self.p = _probability("aug.large_scale_jitter.p", self.p)


@dataclass
class CropSettings:
    """Kornia RandomResizedCrop: scale (area fraction) and ratio (aspect) ranges; p."""

    scale: Sequence[float] = (0.3, 1.0)
    ratio: Sequence[float] = (3 / 4, 4 / 3)
    p: float = 0.5

    def __post_init__(self) -> None:
        self.scale = check_range("aug.random_resized_crop.scale", self.scale, 1e-3, 1.0)
        self.ratio = check_range("aug.random_resized_crop.ratio", self.ratio, 1e-2, 100.0)
        self.p = _probability("aug.random_resized_crop.p", self.p)


@dataclass
class PhotometricSettings:
    """Kornia RandomBrightness / RandomContrast / RandomSaturation / RandomHue, each applied
    with probability p (MMDetection's PhotoMetricDistortion: delta 32/255, 0.5-1.5, 0.5-1.5,
    18/180 of the hue circle); a null range leaves that op out."""

    brightness: Sequence[float] | None = (1 - 32 / 255, 1 + 32 / 255)
    contrast: Sequence[float] | None = (0.5, 1.5)
    saturation: Sequence[float] | None = (0.5, 1.5)
    hue: Sequence[float] | None = (-0.1, 0.1)
    p: float = 0.5

    def __post_init__(self) -> None:
        limits = {"brightness": (0, 2), "contrast": (0, 10), "saturation": (0, 10)}
        limits["hue"] = (-0.5, 0.5)
        for key, (low, high) in limits.items():
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, check_range(f"aug.photometric.{key}", value, low, high))
        self.p = _probability("aug.photometric.p", self.p)


def parse(cls, name: str, value: dict | None):
    """``cls(**value)`` (None stays None), unknown keys named in a ValueError."""
    if value is None:
        return None
    if not hasattr(value, "items"):
        raise ValueError(f"aug.{name} must be a mapping of settings or null, got {value!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(
            f"aug.{name}: unknown setting(s) {unknown}; expected some of {sorted(known)}"
        )
    return cls(**dict(value))
