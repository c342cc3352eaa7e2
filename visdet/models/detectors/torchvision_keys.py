"""Key mapping from torchvision's ``fasterrcnn_resnet*_fpn`` state dicts to visdet's FasterRCNN.

visdet's modules follow torchvision's layout, so the mapping is a renaming:

| torchvision                                  | visdet                          |
| -------------------------------------------- | ------------------------------- |
| ``backbone.body.*``                          | ``backbone.*``                  |
| ``backbone.fpn.{inner,layer}_blocks.i[.0].*``| ``neck.{inner,layer}_blocks.i.*``|
| ``rpn.head.conv.j[.0].*``                    | ``rpn.head.conv.{2j}.*``        |
| ``rpn.head.{cls_logits,bbox_pred}.*``        | unchanged                       |
| ``roi_heads.box_head.fc{6,7}.*``             | unchanged                       |
| ``roi_heads.box_predictor.*``                | unchanged                       |

torchvision's ``num_classes`` counts the background, visdet's does not (91 -> 90); the class
index layout is the same. Only the v1 two-FC box head is supported here.
"""

from __future__ import annotations

import re

from torch import Tensor

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^backbone\.body\.(.+)$"), r"backbone.\1"),
    (
        re.compile(r"^backbone\.fpn\.(inner_blocks|layer_blocks)\.(\d+)\.(?:0\.)?(weight|bias)$"),
        r"neck.\1.\2.\3",
    ),
    (
        re.compile(
            r"^roi_heads\.(box_head\.fc[67]|box_predictor\.(?:cls_score|bbox_pred))\.(weight|bias)$"
        ),
        r"roi_heads.\1.\2",
    ),
    (re.compile(r"^rpn\.head\.(cls_logits|bbox_pred)\.(weight|bias)$"), r"rpn.head.\1.\2"),
]
_RPN_CONV = re.compile(r"^rpn\.head\.conv\.(\d+)\.(?:0\.)?(weight|bias)$")


def faster_rcnn_from_torchvision(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision Faster R-CNN ResNet-FPN (v1) state dict to visdet's keys.

    Raises ValueError listing the keys that have no visdet counterpart (another architecture,
    e.g. the v2 box head with convolutions)."""
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        m = _RPN_CONV.match(key)
        if m:
            out[f"rpn.head.conv.{2 * int(m.group(1))}.{m.group(2)}"] = value
            continue
        for pattern, repl in _RULES:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"{len(unknown)} keys of the torchvision state dict have no visdet counterpart "
            f"(expected a fasterrcnn_resnet*_fpn v1 model), first: {unknown[:5]}"
        )
    return out
