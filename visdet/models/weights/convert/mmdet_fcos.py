"""Conversion of an MMDetection (v2/v3) FCOS ResNet-FPN checkpoint to visdet's keys.

MMDetection's FCOS configs (``fcos_r50-caffe_fpn_gn-head[-center-normbbox-centeronreg-giou]
_1x_coco``: caffe-style ResNet, FPN from C3 with P6 from P5 and a ReLU before P7, an
``FCOSHead`` of 4 conv + GroupNorm + ReLU per tower with a learnable scale per level) map onto
visdet's FCOS (torchvision's ``FCOSHead`` layout) by renaming:

| MMDetection                                  | visdet                                          |
| -------------------------------------------- | ----------------------------------------------- |
| ``backbone.*`` (torchvision ResNet names)    | ``backbone.*``                                  |
| ``neck.lateral_convs.i`` / ``fpn_convs.i``   | ``neck.inner_blocks.i`` / ``layer_blocks.i``    |
| ``neck.fpn_convs.3`` / ``.4``                | ``neck.p6`` / ``neck.p7``                       |
| ``bbox_head.cls_convs.i.conv`` / ``.gn``     | ``head.classification_head.conv.{3i}/{3i+1}``   |
| ``bbox_head.reg_convs.i.conv`` / ``.gn``     | ``head.regression_head.conv.{3i}/{3i+1}``       |
| ``bbox_head.conv_cls`` [K]                   | ``head.classification_head.cls_logits``         |
| ``bbox_head.conv_reg``                       | ``head.regression_head.bbox_reg``               |
| ``bbox_head.conv_centerness``                | ``head.regression_head.bbox_ctrness``           |
| ``bbox_head.scales.i.scale`` (5 scalars)     | ``head.regression_head.scales`` [5]             |

The class layer needs no change (MMDetection's sigmoid class c, 0-based, is visdet's label
c + 1). The preset ``conf/model/fcos_r50_fpn_mmdet.yaml`` sets what the weights cannot carry:
the caffe-style ResNet (stride in the first 1x1 conv) fed BGR images minus Detectron's mean
(std 1 on 0..255), points at the cell centres ((i + 0.5) x stride, fixed strides 8..128),
distances in strides (``norm_on_bbox``) with centerness on the regression tower
(``centerness_on_reg``), scores ``sigmoid(class)`` thresholded at 0.05 and ranked, then
multiplied by the centerness, NMS 0.6, 100 detections. Checkpoints of the plain config
(``norm_on_bbox=False``: exp() distances, centerness on the class tower) are refused: their
head computes something visdet's FCOS does not.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

from visdet.models.weights.convert.mmdet_faster_rcnn import rename_by_rules
from visdet.models.weights.convert.mmdet_retinanet import BACKBONE_AND_NECK_RULES


def _tower(match: re.Match[str]) -> str:
    head = "classification_head" if match.group(1) == "cls" else "regression_head"
    index = 3 * int(match.group(2)) + (0 if match.group(3) == "conv" else 1)
    return f"head.{head}.conv.{index}.{match.group(4)}"


_RULES = [
    *BACKBONE_AND_NECK_RULES,
    (re.compile(r"^bbox_head\.(cls|reg)_convs\.(\d+)\.(conv|gn)\.(weight|bias)$"), _tower),
    (re.compile(r"^bbox_head\.conv_cls\.(weight|bias)$"),
     r"head.classification_head.cls_logits.\1"),
    (re.compile(r"^bbox_head\.conv_reg\.(weight|bias)$"), r"head.regression_head.bbox_reg.\1"),
    (re.compile(r"^bbox_head\.conv_centerness\.(weight|bias)$"),
     r"head.regression_head.bbox_ctrness.\1"),
]  # fmt: skip
_SCALE = re.compile(r"^bbox_head\.scales\.(\d+)\.scale$")
_REQUIRED = [
    "backbone.conv1.weight",
    "neck.fpn_convs.4.conv.weight",
    "bbox_head.conv_cls.weight",
    "bbox_head.conv_reg.weight",
    "bbox_head.conv_centerness.weight",
    "bbox_head.cls_convs.0.gn.weight",
    "bbox_head.scales.0.scale",
]


def is_mmdet_fcos(state_dict: dict[str, Tensor]) -> bool:
    return any(k.startswith("bbox_head.conv_centerness.") for k in state_dict)


def fcos_from_mmdet(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Convert an MMDetection FCOS ResNet-FPN state dict with a GroupNorm head (the
    ``state_dict`` entry of its checkpoint) to visdet's FCOS keys; pair it with
    ``model=fcos_r50_fpn_mmdet`` and MMDetection's ``num_classes`` (80 for COCO).

    Raises ValueError naming missing keys (not an FCOS R50-FPN with a GN head and level
    scales) or keys with no visdet counterpart (a DCN tower, another backbone, ...)."""
    missing = [k for k in _REQUIRED if k not in state_dict]
    if missing:
        raise ValueError(
            f"{len(missing)} keys of an MMDetection FCOS ResNet-FPN with a GroupNorm head are "
            f"missing from the state dict, first: {missing[:5]}"
        )
    scales = {int(m.group(1)): v for k, v in state_dict.items() if (m := _SCALE.match(k))}
    if sorted(scales) != list(range(len(scales))) or any(v.numel() != 1 for v in scales.values()):
        raise ValueError(
            f"bbox_head.scales.i.scale must be scalars for levels 0..n-1, got levels "
            f"{sorted(scales)}"
        )
    rest = {k: v for k, v in state_dict.items() if not _SCALE.match(k)}
    out, unknown = rename_by_rules(rest, _RULES)
    if unknown:
        raise ValueError(
            f"{len(unknown)} keys of the MMDetection state dict have no visdet counterpart "
            f"(expected an FCOS ResNet-FPN with a GroupNorm FCOSHead), first: {unknown[:5]}"
        )
    out["head.regression_head.scales"] = torch.stack(
        [scales[i].reshape(()) for i in range(len(scales))]
    )
    return out
