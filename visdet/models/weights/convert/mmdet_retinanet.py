"""Conversion of an MMDetection (v2/v3) RetinaNet ResNet-FPN checkpoint to visdet's keys.

MMDetection's ``retinanet_r50_fpn`` (pytorch-style ResNet, FPN from C3 with P6 computed from
C5 and P7 from P6 without a ReLU, ``RetinaHead`` of 4 conv + ReLU per tower) maps onto visdet's
RetinaNet by renaming:

| MMDetection                                   | visdet                                       |
| --------------------------------------------- | -------------------------------------------- |
| ``backbone.*`` (torchvision ResNet names)     | ``backbone.*``                               |
| ``neck.lateral_convs.i.conv.*`` (i = 0..2)    | ``neck.inner_blocks.i.*``                    |
| ``neck.fpn_convs.i.conv.*`` (i = 0..2)        | ``neck.layer_blocks.i.*``                    |
| ``neck.fpn_convs.3.conv.*`` / ``.4.conv.*``   | ``neck.p6.*`` / ``neck.p7.*``                |
| ``bbox_head.cls_convs.i.conv.*``              | ``head.classification_head.conv.i.0.*``      |
| ``bbox_head.reg_convs.i.conv.*``              | ``head.regression_head.conv.i.0.*``          |
| ``bbox_head.retina_cls.*`` [A*K]              | ``head.classification_head.cls_logits.*``    |
| ``bbox_head.retina_reg.*`` [A*4]              | ``head.regression_head.bbox_reg.*``          |

The class layer needs no change: MMDetection's sigmoid classifier has K columns per anchor
(class c, 0-based, is visdet's label c + 1, column c) in the same anchor-major order, and its
anchors per location are ratio-major then scale, as visdet's. Box deltas use stds (1, 1, 1, 1)
= visdet's weights (1, 1, 1, 1). What the weights cannot carry, the preset
``conf/model/retinanet_r50_fpn_mmdet.yaml`` sets: unrounded anchors (4 x stride x 2^(i/3))
with fixed strides 8..128, no ReLU before P7, 100 detections per image.
"""

from __future__ import annotations

import re

from torch import Tensor

from visdet.models.weights.convert.mmdet_faster_rcnn import BACKBONE_KEY, rename_by_rules

# ResNet and FPN C3-C5 + P6/P7 (MMDetection's start_level=1, num_outs=5), shared with FCOS
BACKBONE_AND_NECK_RULES: list[tuple[re.Pattern[str], str]] = [
    (BACKBONE_KEY, r"backbone.\1"),
    (re.compile(r"^neck\.lateral_convs\.([0-2])\.conv\.(weight|bias)$"),
     r"neck.inner_blocks.\1.\2"),
    (re.compile(r"^neck\.fpn_convs\.([0-2])\.conv\.(weight|bias)$"), r"neck.layer_blocks.\1.\2"),
    (re.compile(r"^neck\.fpn_convs\.3\.conv\.(weight|bias)$"), r"neck.p6.\1"),
    (re.compile(r"^neck\.fpn_convs\.4\.conv\.(weight|bias)$"), r"neck.p7.\1"),
]  # fmt: skip
_RULES: list[tuple[re.Pattern[str], str]] = [
    *BACKBONE_AND_NECK_RULES,
    (re.compile(r"^bbox_head\.cls_convs\.(\d+)\.conv\.(weight|bias)$"),
     r"head.classification_head.conv.\1.0.\2"),
    (re.compile(r"^bbox_head\.reg_convs\.(\d+)\.conv\.(weight|bias)$"),
     r"head.regression_head.conv.\1.0.\2"),
    (re.compile(r"^bbox_head\.retina_cls\.(weight|bias)$"),
     r"head.classification_head.cls_logits.\1"),
    (re.compile(r"^bbox_head\.retina_reg\.(weight|bias)$"), r"head.regression_head.bbox_reg.\1"),
]  # fmt: skip
_REQUIRED = [
    "backbone.conv1.weight",
    "neck.fpn_convs.4.conv.weight",
    "bbox_head.retina_cls.weight",
    "bbox_head.retina_reg.weight",
]


def is_mmdet_retinanet(state_dict: dict[str, Tensor]) -> bool:
    return any(k.startswith("bbox_head.retina_cls.") for k in state_dict)


def retinanet_from_mmdet(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Convert an MMDetection RetinaNet ResNet-FPN state dict (the ``state_dict`` entry of its
    checkpoint) to visdet's RetinaNet keys; pair it with ``model=retinanet_r50_fpn_mmdet`` and
    MMDetection's ``num_classes`` (80 for COCO).

    Raises ValueError naming missing keys (not a RetinaNet R50-FPN with P6/P7 convs) or keys
    with no visdet counterpart (a GN head, a caffe-style or other backbone, ...)."""
    missing = [k for k in _REQUIRED if k not in state_dict]
    if missing:
        raise ValueError(
            f"{len(missing)} keys of an MMDetection RetinaNet ResNet-FPN are missing from the "
            f"state dict, first: {missing[:5]}"
        )
    out, unknown = rename_by_rules(state_dict, _RULES)
    if unknown:
        raise ValueError(
            f"{len(unknown)} keys of the MMDetection state dict have no visdet counterpart "
            f"(expected a RetinaNet ResNet-FPN, pytorch style, plain RetinaHead), first: "
            f"{unknown[:5]}"
        )
    return out
