"""Key mapping from torchvision's ``maskrcnn_resnet50_fpn`` (v1) and
``maskrcnn_resnet50_fpn_v2`` state dicts to visdet's MaskRCNN.

Everything but the mask branch is Faster R-CNN's mapping
(``visdet.models.weights.convert.torchvision_faster_rcnn``). The mask branch keeps its names
(visdet's ``MaskHead`` / ``MaskPredictor`` have torchvision's layout):
``roi_heads.mask_head.{i}.0.*`` (conv), ``roi_heads.mask_head.{i}.1.*`` (v2's BatchNorm2d),
``roi_heads.mask_predictor.{conv5_mask,mask_fcn_logits}.*``; the names of checkpoints saved
before torchvision's ``MaskRCNNHeads`` version 2 (the v1 COCO file:
``roi_heads.mask_head.mask_fcn{i+1}.*``) become ``roi_heads.mask_head.{i}.0.*``, as
torchvision's own loader renames them.

torchvision's ``num_classes`` counts the background (91 -> visdet's 90); the mask logits keep
their background channel 0, as the box predictor keeps its background row.
"""

from __future__ import annotations

import re

from torch import Tensor

from visdet.models.weights.convert.torchvision_faster_rcnn import faster_rcnn_from_torchvision

_BN = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"
_MASK_HEAD = re.compile(rf"^roi_heads\.mask_head\.(\d+)\.(0\.(?:weight|bias)|1\.{_BN})$")
_MASK_HEAD_OLD = re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$")
_MASK_PREDICTOR = re.compile(
    r"^roi_heads\.mask_predictor\.(conv5_mask|mask_fcn_logits)\.(weight|bias)$"
)


def is_torchvision_mask_rcnn(state_dict: dict[str, Tensor]) -> bool:
    return any(k.startswith("backbone.body.") for k in state_dict) and any(
        k.startswith("roi_heads.mask_predictor.") for k in state_dict
    )


def mask_rcnn_from_torchvision(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision Mask R-CNN ResNet-FPN (v1 or v2) state dict to visdet's keys; pair
    v1 with ``model=mask_rcnn_r50_fpn`` and v2 with ``model=mask_rcnn_r50_fpn_v2``
    (``num_classes`` 91 -> 90).

    Raises ValueError naming the keys without a visdet counterpart."""
    mask: dict[str, Tensor] = {}
    rest: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if _MASK_HEAD.match(key) or _MASK_PREDICTOR.match(key):
            mask[key] = value
        elif m := _MASK_HEAD_OLD.match(key):
            mask[f"roi_heads.mask_head.{int(m.group(1)) - 1}.0.{m.group(2)}"] = value
        elif key.startswith("roi_heads.mask_"):
            raise ValueError(
                f"torchvision mask-branch key {key!r} has no visdet counterpart (expected "
                "roi_heads.mask_head.i.{0,1}.* and roi_heads.mask_predictor.*)"
            )
        else:
            rest[key] = value
    if not any(k.startswith("roi_heads.mask_predictor.") for k in mask):
        raise ValueError(
            "the state dict has no roi_heads.mask_predictor.* keys: not a torchvision Mask "
            "R-CNN (a Faster R-CNN state dict loads with model=faster_rcnn_r50_fpn)"
        )
    return {**faster_rcnn_from_torchvision(rest), **mask}
