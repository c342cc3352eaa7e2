"""Conversion of an MMDetection (v2/v3) Mask R-CNN ResNet-FPN checkpoint to visdet's keys.

Everything but the mask branch is MMDetection's Faster R-CNN
(``visdet.models.weights.convert.mmdet_faster_rcnn``). MMDetection's ``FCNMaskHead`` (4 convs
with bias and ReLU, a 2x ``deconv`` upsample, a 1x1 ``conv_logits``) is visdet's (and
torchvision's) mask head and predictor:

| MMDetection                                     | visdet                                         |
| ----------------------------------------------- | ---------------------------------------------- |
| ``roi_head.mask_head.convs.i.conv.*``           | ``roi_heads.mask_head.i.0.*``                  |
| ``roi_head.mask_head.upsample.*``               | ``roi_heads.mask_predictor.conv5_mask.*``      |
| ``roi_head.mask_head.conv_logits.*`` [K, ...]   | ``roi_heads.mask_predictor.mask_fcn_logits.*`` |

MMDetection's mask logits have one channel per object class; visdet's have a background
channel 0 in front (never used: masks are taken at the detection's label), filled with zeros,
so MMDetection class c is channel c + 1 as in the box predictor.

The settings the weights cannot carry are the box branch's (``mmdet_settings_mismatch``) and
the mask branch's: RoIAlign 14 x 14 aligned with adaptive sampling, and pasting with
``grid_sample`` (``mask_paste: grid_sample``, masks >= 0.5). ``conf/model/
mask_rcnn_r50_fpn_mmdet.yaml`` sets them; ``mmdet_mask_settings_mismatch`` lists what a given
detector does differently.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from visdet.models.weights.convert.mmdet_faster_rcnn import (
    faster_rcnn_from_mmdet,
    mmdet_settings_mismatch,
)

_CONV = re.compile(r"^roi_head\.mask_head\.convs\.(\d+)\.conv\.(weight|bias)$")
_UPSAMPLE = re.compile(r"^roi_head\.mask_head\.upsample\.(weight|bias)$")
_LOGITS = re.compile(r"^roi_head\.mask_head\.conv_logits\.(weight|bias)$")


def is_mmdet_mask_rcnn(state_dict: dict[str, Tensor]) -> bool:
    return any(k.startswith("roi_head.mask_head.") for k in state_dict)


def mask_rcnn_from_mmdet(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Convert an MMDetection Mask R-CNN ResNet-FPN state dict to visdet's MaskRCNN keys; pair
    it with ``model=mask_rcnn_r50_fpn_mmdet`` and ``num_classes=K`` (80 for COCO).

    Raises ValueError naming mask-branch keys without a visdet counterpart (a class-agnostic
    head, a norm in the mask convs), a missing part of the mask head, or what
    ``faster_rcnn_from_mmdet`` refuses in the rest."""
    mask: dict[str, Tensor] = {}
    rest: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if m := _CONV.match(key):
            mask[f"roi_heads.mask_head.{m.group(1)}.0.{m.group(2)}"] = value
        elif m := _UPSAMPLE.match(key):
            mask[f"roi_heads.mask_predictor.conv5_mask.{m.group(1)}"] = value
        elif m := _LOGITS.match(key):
            rows = value.new_zeros(1, *value.shape[1:])
            mask[f"roi_heads.mask_predictor.mask_fcn_logits.{m.group(1)}"] = torch.cat(
                [rows, value]
            )
        elif key.startswith("roi_head.mask_head."):
            raise ValueError(
                f"MMDetection mask-head key {key!r} has no visdet counterpart (expected "
                "FCNMaskHead: convs.i.conv.*, upsample.* (deconv), conv_logits.*)"
            )
        else:
            rest[key] = value
    for part in ("roi_heads.mask_head.0.0.weight", "roi_heads.mask_predictor.conv5_mask.weight",
                 "roi_heads.mask_predictor.mask_fcn_logits.weight"):  # fmt: skip
        if part not in mask:
            raise ValueError(
                "the MMDetection state dict lacks roi_head.mask_head.{convs.0.conv, upsample, "
                f"conv_logits}}.weight (no {part}): not a Mask R-CNN with an FCNMaskHead"
            )
    num_classes = state_dict["roi_head.bbox_head.fc_cls.weight"].shape[0] - 1
    logits = mask["roi_heads.mask_predictor.mask_fcn_logits.weight"].shape[0] - 1
    if logits != num_classes:
        raise ValueError(
            f"roi_head.mask_head.conv_logits has {logits} channels; expected one per class "
            f"({num_classes}, as fc_cls; class_agnostic=True is not supported)"
        )
    return {**faster_rcnn_from_mmdet(rest), **mask}


def mmdet_mask_settings_mismatch(detector: nn.Module) -> list[str]:
    """``mmdet_settings_mismatch`` (the box branch) plus the mask branch's settings that differ
    from MMDetection's Mask R-CNN R50-FPN (mask RoIAlign, pasting, threshold)."""
    out = mmdet_settings_mismatch(detector)
    pool = detector.roi_heads.mask_roi_pool

    def check(name: str, ours: object, theirs: object) -> None:
        if ours != theirs:
            out.append(f"{name} is {ours!r}, MMDetection uses {theirs!r}")

    check("mask RoIAlign feature maps", pool.featmap_names, ("p2", "p3", "p4", "p5"))
    check("mask RoIAlign output size", pool.output_size, (14, 14))
    check("mask RoIAlign sampling_ratio", max(pool.sampling_ratio, 0), 0)
    check("mask RoIAlign aligned", pool.aligned, True)
    check("mask pasting (mask_paste)", detector.mask_paste, "grid_sample")
    check("mask threshold", detector.mask_threshold, 0.5)
    return out
