"""Key mapping from torchvision's ``fasterrcnn_resnet*_fpn`` (v1) and
``fasterrcnn_resnet50_fpn_v2`` state dicts to visdet's FasterRCNN.

visdet's modules follow torchvision's layout, so the mapping is a renaming:

- ``backbone.body.*`` -> ``backbone.*``
- v1 ``backbone.fpn.{inner,layer}_blocks.i[.0].*`` -> ``neck.{inner,layer}_blocks.i.*``
- v2 ``backbone.fpn.{inner,layer}_blocks.i.{0,1}.*`` -> ``neck.{inner,layer}_blocks.i.{0,1}.*``
- ``rpn.head.conv[.j.0].*`` -> ``rpn.head.conv.{2j}.*``
- ``rpn.head.{cls_logits,bbox_pred}.*``, v1 ``roi_heads.box_head.fc{6,7}.*`` and
  ``roi_heads.box_predictor.*``: unchanged
- v2 ``roi_heads.box_head.i.{0,1}.*`` (i < n convs) -> ``roi_heads.box_head.convs.i.{0,1}.*``
- v2 ``roi_heads.box_head.{n+1+2j}.*`` (the FC layers) -> ``roi_heads.box_head.fcs.j.*``

v1 vs v2 is read from the keys: the FPN has BatchNorm (``fpn_norm="bn"``) when its blocks
have a ``.1.`` norm entry, and the box head is the conv+FC head (``box_head_convs=n``) when its
keys are numbered. The short keys ``rpn.head.conv.weight`` and
``backbone.fpn.inner_blocks.i.weight`` of checkpoints saved by older torchvision (the v1 COCO
file) are accepted too. ``num_batches_tracked`` entries are kept (visdet's FrozenBatchNorm2d
drops them on load).

torchvision's ``num_classes`` counts the background, visdet's does not (91 -> 90); the class
index layout is the same (row 0 of the predictor is the background).
"""

from __future__ import annotations

import re

from torch import Tensor

_BN = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^backbone\.body\.(.+)$"), r"backbone.\1"),
    (
        re.compile(
            r"^roi_heads\.(box_head\.fc[67]|box_predictor\.(?:cls_score|bbox_pred))\.(weight|bias)$"
        ),
        r"roi_heads.\1.\2",
    ),
    (re.compile(r"^rpn\.head\.(cls_logits|bbox_pred)\.(weight|bias)$"), r"rpn.head.\1.\2"),
]
_RPN_CONV = re.compile(r"^rpn\.head\.conv\.(?:(\d+)\.0\.)?(weight|bias)$")
_FPN_V1 = re.compile(r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(?:0\.)?(weight|bias)$")
_FPN_V2 = re.compile(rf"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(0\.weight|1\.{_BN})$")
_BOX_CONV = re.compile(rf"^roi_heads\.box_head\.(\d+)\.(0\.(?:weight|bias)|1\.{_BN})$")
_BOX_FC = re.compile(r"^roi_heads\.box_head\.(\d+)\.(weight|bias)$")


def _has_fpn_norm(state_dict: dict[str, Tensor]) -> bool:
    return any((m := _FPN_V2.match(k)) and m.group(3).startswith("1.") for k in state_dict)


def torchvision_variant(state_dict: dict[str, Tensor]) -> str:
    """``"v2"`` if the state dict has v2's FPN norms or conv+FC box head, else ``"v1"``."""
    if _has_fpn_norm(state_dict) or any(_BOX_CONV.match(k) for k in state_dict):
        return "v2"
    return "v1"


def faster_rcnn_from_torchvision(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision Faster R-CNN ResNet-FPN (v1 or v2) state dict to visdet's keys.

    Pair a v1 state dict with ``faster_rcnn_resnet_fpn(...)`` defaults
    (``model=faster_rcnn_r50_fpn``) and a v2 one with ``norm="bn", fpn_norm="bn",
    rpn_num_convs=2, box_head_convs=4`` (``model=faster_rcnn_r50_fpn_v2``); ``num_classes``
    is torchvision's minus one (91 -> 90).

    Raises ValueError listing the keys that have no visdet counterpart (another
    architecture)."""
    fpn_norm = _has_fpn_norm(state_dict)
    box_convs = {int(m.group(1)) for k in state_dict if (m := _BOX_CONV.match(k))}
    n_convs = len(box_convs)
    if box_convs and box_convs != set(range(n_convs)):
        raise ValueError(
            f"torchvision box head conv blocks must be numbered 0..n-1, got {sorted(box_convs)}"
        )
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        new = _rename(key, fpn_norm, n_convs)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise ValueError(
            f"{len(unknown)} keys of the torchvision state dict have no visdet counterpart "
            f"(expected a fasterrcnn_resnet*_fpn v1 or fasterrcnn_resnet50_fpn_v2 model), "
            f"first: {unknown[:5]}"
        )
    return out


def rename_fpn(key: str, fpn_norm: bool) -> str | None:
    """visdet's name of a torchvision ``backbone.fpn.{inner,layer}_blocks`` key (with or
    without FPN norms), or None for any other key."""
    if fpn_norm:
        if m := _FPN_V2.match(key):
            return f"neck.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    elif m := _FPN_V1.match(key):
        return f"neck.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    return None


def _rename(key: str, fpn_norm: bool, n_convs: int) -> str | None:
    if m := _RPN_CONV.match(key):
        return f"rpn.head.conv.{2 * int(m.group(1) or 0)}.{m.group(2)}"
    if (name := rename_fpn(key, fpn_norm)) is not None:
        return name
    if m := _BOX_CONV.match(key):
        return f"roi_heads.box_head.convs.{m.group(1)}.{m.group(2)}"
    if (m := _BOX_FC.match(key)) and n_convs > 0:
        offset = int(m.group(1)) - n_convs - 1  # after the convs comes Flatten, then Linear, ReLU
        if offset < 0 or offset % 2:
            return None
        return f"roi_heads.box_head.fcs.{offset // 2}.{m.group(2)}"
    for pattern, repl in _RULES:
        if pattern.match(key):
            return pattern.sub(repl, key)
    return None
