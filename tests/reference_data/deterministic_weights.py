"""Deterministic, framework-independent weights for comparing two implementations.

Values come from a closed formula (no random generator), so torchvision (in its own
virtualenv) and visdet fill the same tensors with the same numbers.
"""

from __future__ import annotations

import math

import torch


def value(key: str, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    """float64 values for tensor number ``index`` (in torchvision's state-dict order)."""
    n = math.prod(shape)
    v = torch.sin(torch.arange(n, dtype=torch.float64) * 0.7 + index * 1.3)
    if key.endswith("running_var"):
        return (1.0 + 0.5 * v.abs()).reshape(shape)
    if key.endswith("running_mean") or (key.endswith("bias") and len(shape) == 1):
        return (0.05 * v).reshape(shape)
    if len(shape) == 1:  # norm weights
        return (1.0 + 0.1 * v).reshape(shape)
    fan_in = n // shape[0]
    gain = 0.02 if "bbox_pred" in key else 1.0  # small box deltas: proposals near anchors
    return (gain * v * math.sqrt(3.0 / fan_in)).reshape(shape)  # uniform-like, unit gain


def level_features(channels: int, sizes) -> list[torch.Tensor]:
    """FPN-like float64 features [1, channels, h, w] per level (dense-head references)."""
    return [value("feature", 100 + i, (1, channels, h, w)) for i, (h, w) in enumerate(sizes)]


def fill(keys_and_shapes: list[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    return {k: value(k, i, s) for i, (k, s) in enumerate(keys_and_shapes) if len(s) > 0}


def images() -> list[torch.Tensor]:
    """Two float64 test images (different sizes) with smooth structure in [0, 1]."""
    out = []
    for h, w, phase in ((120, 160, 0.0), (96, 72, 1.0)):
        y = torch.linspace(0, 1, h, dtype=torch.float64)[:, None]
        x = torch.linspace(0, 1, w, dtype=torch.float64)[None, :]
        chans = [
            0.5 + 0.5 * torch.sin(6 * x + 4 * y + phase + c) * torch.cos(5 * y - c)
            for c in range(3)
        ]
        out.append(torch.stack(chans))
    return out


def fill_with_counters(
    keys_and_shapes: list[tuple[str, tuple[int, ...]]],
) -> dict[str, torch.Tensor]:
    """``fill`` plus BatchNorm2d's ``num_batches_tracked`` counters (int64 zeros), for models
    whose state dict has them (torchvision detectors built without pretrained weights)."""
    out = fill(keys_and_shapes)
    for k, s in keys_and_shapes:
        if len(s) == 0 and k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(0, dtype=torch.int64)
    return out


def fill_detector(
    keys_and_shapes: list[tuple[str, tuple[int, ...]]], cls_gain: float = 16.0
) -> dict[str, torch.Tensor]:
    """``fill_with_counters`` with the class-score weights scaled by ``cls_gain``: with many
    classes (91) the unit-gain logits are too flat for any class probability to pass the 0.05
    detection threshold."""
    out = fill_with_counters(keys_and_shapes)
    for k in out:
        if k.endswith("cls_score.weight"):
            out[k] = out[k] * cls_gain
    return out


def fill_dense_detector(
    keys_and_shapes: list[tuple[str, tuple[int, ...]]], num_anchors: int, num_classes: int
) -> dict[str, torch.Tensor]:
    """``fill_with_counters`` for a torchvision one-stage detector (RetinaNet, FCOS) whose
    class layer has ``num_classes`` columns per anchor including the unused background
    column 0: that column's bias is set to -1000, so it never scores (as in a trained model,
    where no box ever has label 0) and visdet's converter, which drops it, sees the same
    detections."""
    out = fill_with_counters(keys_and_shapes)
    key = "head.classification_head.cls_logits.bias"
    bias = out[key].clone().view(num_anchors, num_classes)
    bias[:, 0] = -1000.0
    out[key] = bias.flatten()
    return out


def normalised_image(h: int, w: int, phase: float = 0.0) -> torch.Tensor:
    """A float64 [1, 3, h, w] input of roughly unit scale (as after mean/std), smooth."""
    y = torch.linspace(0, 1, h, dtype=torch.float64)[:, None]
    x = torch.linspace(0, 1, w, dtype=torch.float64)[None, :]
    chans = [torch.sin(6 * x + 4 * y + phase + c) * torch.cos(5 * y - c) for c in range(3)]
    return torch.stack(chans)[None]
