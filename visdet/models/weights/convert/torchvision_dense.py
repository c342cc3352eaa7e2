"""Key mapping from torchvision's one-stage detectors (``retinanet_resnet50_fpn``,
``retinanet_resnet50_fpn_v2``, ``fcos_resnet50_fpn``) to visdet's RetinaNet and FCOS.

visdet's modules follow torchvision's layout, so the mapping is a renaming plus one change:

- ``backbone.body.*`` -> ``backbone.*``
- ``backbone.fpn.{inner,layer}_blocks.i[.0].*`` -> ``neck.{inner,layer}_blocks.i.*``
- ``backbone.fpn.extra_blocks.{p6,p7}.*`` -> ``neck.{p6,p7}.*``
- ``head.*``: unchanged, except the class layer ``head.classification_head.cls_logits``:
  torchvision's has ``num_classes`` columns per anchor with column 0 for its background
  index, which no box ever has (labels 1..90 on COCO); visdet's columns are its classes
  1..K, so column 0 of every anchor is dropped (``[A * 91, ...]`` -> ``[A * 90, ...]``).

Whether P6 comes from P5 (v1) or C5 (v2) is the neck's setting (``p6p7_from``), read from
the shape of ``extra_blocks.p6.weight`` by ``p6p7_source``.
"""

from __future__ import annotations

import re

from torch import Tensor

from visdet.models.weights.convert.torchvision_faster_rcnn import rename_fpn

_EXTRA = re.compile(r"^backbone\.fpn\.extra_blocks\.(p6|p7)\.(weight|bias)$")
_HEAD = {
    "retinanet": re.compile(
        r"^head\.(classification_head\.(?:conv\.\d+\.\d+\.|cls_logits\.)|"
        r"regression_head\.(?:conv\.\d+\.\d+\.|bbox_reg\.))(weight|bias)$"
    ),
    "fcos": re.compile(
        r"^head\.(classification_head\.(?:conv\.\d+\.|cls_logits\.)|"
        r"regression_head\.(?:conv\.\d+\.|bbox_reg\.|bbox_ctrness\.))(weight|bias)$"
    ),
}
CLS = "head.classification_head.cls_logits."


def is_torchvision_dense(state_dict: dict[str, Tensor], family: str) -> bool:
    """Whether ``state_dict`` is torchvision's ``family`` (``retinanet`` or ``fcos``)."""
    if not any(k.startswith("backbone.body.") for k in state_dict):
        return False
    has_ctrness = any(k.startswith("head.regression_head.bbox_ctrness.") for k in state_dict)
    has_reg = any(k.startswith("head.regression_head.bbox_reg.") for k in state_dict)
    return has_reg and has_ctrness == (family == "fcos")


def p6p7_source(state_dict: dict[str, Tensor]) -> str:
    """``"p5"`` when P6 is computed from the FPN's P5 (same channels in and out: v1, FCOS),
    ``"c5"`` when from the backbone's last stage (v2)."""
    weight = state_dict["backbone.fpn.extra_blocks.p6.weight"]
    return "p5" if weight.shape[0] == weight.shape[1] else "c5"


def _convert(state_dict: dict[str, Tensor], family: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith("backbone.body."):
            out["backbone." + key[len("backbone.body.") :]] = value
        elif (name := rename_fpn(key, fpn_norm=False)) is not None:
            out[name] = value
        elif m := _EXTRA.match(key):
            out[f"neck.{m.group(1)}.{m.group(2)}"] = value
        elif _HEAD[family].match(key):
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"{len(unknown)} keys of the torchvision {family} state dict have no visdet "
            f"counterpart, first: {unknown[:5]}"
        )
    reg = state_dict["head.regression_head.bbox_reg.weight"]
    anchors = reg.shape[0] // 4
    for part in ("weight", "bias"):
        value = out[CLS + part]
        columns = value.shape[0] // anchors
        if columns < 2 or columns * anchors != value.shape[0]:
            raise ValueError(
                f"torchvision {CLS}{part} has {value.shape[0]} rows, not a multiple of its "
                f"{anchors} anchors with a background column"
            )
        out[CLS + part] = value.reshape(anchors, columns, *value.shape[1:])[:, 1:].reshape(
            anchors * (columns - 1), *value.shape[1:]
        )
    return out


def retinanet_from_torchvision(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision RetinaNet (v1 or v2) state dict to visdet's keys; pair it with
    ``model=retinanet_r50_fpn`` (v1) or ``retinanet_r50_fpn_v2`` and ``num_classes`` one less
    than torchvision's (91 -> 90)."""
    return _convert(state_dict, "retinanet")


def fcos_from_torchvision(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision ``fcos_resnet50_fpn`` state dict to visdet's keys
    (``model=fcos_r50_fpn``, ``num_classes`` 91 -> 90)."""
    return _convert(state_dict, "fcos")
