"""Conversion of an MMDetection (v2/v3) Faster R-CNN ResNet-FPN checkpoint to visdet's keys.

MMDetection's ``faster_rcnn_r50_fpn`` (pytorch-style ResNet, FPN without extra convs, one-conv
sigmoid RPN head, ``Shared2FCBBoxHead``) is the same network as torchvision's v1, with other
names and three layout differences that the conversion handles:

| MMDetection                                   | visdet                                   |
| --------------------------------------------- | ---------------------------------------- |
| ``backbone.*`` (torchvision ResNet names)     | ``backbone.*``                           |
| ``neck.lateral_convs.i.conv.*``               | ``neck.inner_blocks.i.*``                |
| ``neck.fpn_convs.i.conv.*``                   | ``neck.layer_blocks.i.*``                |
| ``rpn_head.rpn_conv.*``                       | ``rpn.head.conv.0.*``                    |
| ``rpn_head.rpn_cls.*`` (A channels, sigmoid)  | ``rpn.head.cls_logits.*``                |
| ``rpn_head.rpn_reg.*``                        | ``rpn.head.bbox_pred.*``                 |
| ``roi_head.bbox_head.shared_fcs.{0,1}.*``     | ``roi_heads.box_head.fc{6,7}.*``         |
| ``roi_head.bbox_head.fc_cls.*`` [K+1, D]      | ``roi_heads.box_predictor.cls_score.*``  |
| ``roi_head.bbox_head.fc_reg.*`` [4K, D]       | ``roi_heads.box_predictor.bbox_pred.*``  |

- Background: MMDetection's class logits put it last (row K), visdet's first (row 0); the row
  moves, so MMDetection class c is visdet label c + 1. The softmax is unchanged.
- Box regression: MMDetection has 4 rows per object class; visdet has 4 per class including
  the background, whose rows (0..3) are filled with zeros (never used for detections).
- Box coding: MMDetection's ``DeltaXYWHBBoxCoder`` multiplies deltas by ``stds``; visdet's
  BoxCoder divides by ``weights``. RoI head stds (0.1, 0.1, 0.2, 0.2) = weights
  (10, 10, 5, 5), RPN stds (1, 1, 1, 1) = weights (1, 1, 1, 1): visdet's defaults, so the
  weights are copied unchanged.

What the weights cannot carry, the detector's settings must: MMDetection's anchors are not
rounded and use fixed strides (4..64), and its RoIAlign is ``aligned=True`` with adaptive
sampling (``sampling_ratio=0``). ``conf/model/faster_rcnn_r50_fpn_mmdet.yaml`` sets these;
``mmdet_settings_mismatch`` lists what a given detector does differently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from visdet.models.heads.roi_heads import TwoMLPHead

Replacement = str | Callable[[re.Match[str]], str]
_BN = r"(?:weight|bias|running_mean|running_var|num_batches_tracked)"
BACKBONE_KEY = re.compile(
    rf"^backbone\.(conv1\.weight|bn1\.{_BN}|layer\d+\.\d+\."
    rf"(?:conv\d\.weight|bn\d\.{_BN}|downsample\.0\.weight|downsample\.1\.{_BN}))$"
)
_RULES: list[tuple[re.Pattern[str], str]] = [
    (BACKBONE_KEY, r"backbone.\1"),
    (
        re.compile(r"^neck\.lateral_convs\.([0-3])\.conv\.(weight|bias)$"),
        r"neck.inner_blocks.\1.\2",
    ),
    (re.compile(r"^neck\.fpn_convs\.([0-3])\.conv\.(weight|bias)$"), r"neck.layer_blocks.\1.\2"),
    (re.compile(r"^rpn_head\.rpn_conv\.(weight|bias)$"), r"rpn.head.conv.0.\1"),
    (re.compile(r"^rpn_head\.rpn_cls\.(weight|bias)$"), r"rpn.head.cls_logits.\1"),
    (re.compile(r"^rpn_head\.rpn_reg\.(weight|bias)$"), r"rpn.head.bbox_pred.\1"),
    (
        re.compile(r"^roi_head\.bbox_head\.shared_fcs\.0\.(weight|bias)$"),
        r"roi_heads.box_head.fc6.\1",
    ),
    (
        re.compile(r"^roi_head\.bbox_head\.shared_fcs\.1\.(weight|bias)$"),
        r"roi_heads.box_head.fc7.\1",
    ),
    (
        re.compile(r"^roi_head\.bbox_head\.fc_cls\.(weight|bias)$"),
        r"roi_heads.box_predictor.cls_score.\1",
    ),
    (
        re.compile(r"^roi_head\.bbox_head\.fc_reg\.(weight|bias)$"),
        r"roi_heads.box_predictor.bbox_pred.\1",
    ),
]
_REQUIRED = [
    "backbone.conv1.weight",
    *(
        f"neck.{n}.{i}.conv.{p}"
        for n in ("lateral_convs", "fpn_convs")
        for i in range(4)
        for p in ("weight", "bias")
    ),
    *(f"rpn_head.rpn_{n}.{p}" for n in ("conv", "cls", "reg") for p in ("weight", "bias")),
    *(f"roi_head.bbox_head.shared_fcs.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")),
    *(f"roi_head.bbox_head.fc_{n}.{p}" for n in ("cls", "reg") for p in ("weight", "bias")),
]


def faster_rcnn_from_mmdet(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Convert an MMDetection Faster R-CNN ResNet-FPN state dict (``model.state_dict()``, the
    ``state_dict`` entry of its checkpoint file) to visdet's FasterRCNN keys.

    Returns predictor rows background-first: ``cls_score`` [K+1, D] (MMDetection's last row
    moved to row 0) and ``bbox_pred`` [4(K+1), D] (4 zero rows for the background, then
    MMDetection's class-specific rows). Pair it with ``num_classes=K`` (80 for COCO) and the
    settings of ``conf/model/faster_rcnn_r50_fpn_mmdet.yaml``.

    Raises ValueError naming the keys that have no visdet counterpart (e.g. an FPN with extra
    convs, a cascade or mask head), the keys a Faster R-CNN R50-FPN must have that are missing,
    or a head layout visdet cannot represent (softmax RPN, class-agnostic regression).
    """
    missing = [k for k in _REQUIRED if k not in state_dict]
    if missing:
        raise ValueError(
            f"{len(missing)} keys of an MMDetection Faster R-CNN ResNet-FPN are missing from the "
            f"state dict, first: {missing[:5]}"
        )
    out, unknown = rename_by_rules(state_dict, _RULES)
    if unknown:
        raise ValueError(
            f"{len(unknown)} keys of the MMDetection state dict have no visdet counterpart "
            f"(expected a Faster R-CNN ResNet-FPN, pytorch style, FPN without extra convs), "
            f"first: {unknown[:5]}"
        )
    _check_rpn(state_dict)
    cls_w = state_dict["roi_head.bbox_head.fc_cls.weight"]
    cls_b = state_dict["roi_head.bbox_head.fc_cls.bias"]
    reg_w = state_dict["roi_head.bbox_head.fc_reg.weight"]
    reg_b = state_dict["roi_head.bbox_head.fc_reg.bias"]
    num_classes = cls_w.shape[0] - 1
    if reg_w.shape[0] != 4 * num_classes:
        raise ValueError(
            f"roi_head.bbox_head.fc_reg has {reg_w.shape[0]} rows; expected class-specific "
            f"regression with 4 * {num_classes} rows (fc_cls has {num_classes} classes + "
            "background; reg_class_agnostic=True is not supported)"
        )
    out["roi_heads.box_predictor.cls_score.weight"] = _background_first(cls_w)
    out["roi_heads.box_predictor.cls_score.bias"] = _background_first(cls_b)
    out["roi_heads.box_predictor.bbox_pred.weight"] = torch.cat(
        [reg_w.new_zeros(4, *reg_w.shape[1:]), reg_w]
    )
    out["roi_heads.box_predictor.bbox_pred.bias"] = torch.cat([reg_b.new_zeros(4), reg_b])
    return out


def rename_by_rules(
    state_dict: dict[str, Tensor], rules: Sequence[tuple[re.Pattern[str], Replacement]]
) -> tuple[dict[str, Tensor], list[str]]:
    """(the entries renamed by the first matching ``(pattern, replacement)`` (a template or
    a function of the match, as ``re.sub`` takes), the keys no rule matches)."""
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        for pattern, repl in rules:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            unknown.append(key)
    return out, unknown


def _background_first(t: Tensor) -> Tensor:
    return torch.cat([t[-1:], t[:-1]])


def _check_rpn(state_dict: dict[str, Tensor]) -> None:
    cls = state_dict["rpn_head.rpn_cls.weight"].shape[0]
    reg = state_dict["rpn_head.rpn_reg.weight"].shape[0]
    if reg != 4 * cls:
        raise ValueError(
            f"rpn_head.rpn_cls has {cls} channels and rpn_reg {reg}; visdet's RPN needs one "
            "sigmoid logit per anchor (use_sigmoid=True: rpn_reg = 4 x rpn_cls channels)"
        )


# MMDetection's Faster R-CNN R50-FPN inference settings (configs/_base_/models/
# faster_rcnn_r50_fpn.py and the COCO test pipeline), in visdet's terms.
_MMDET = {
    "resize": (800, 1333),
    "size_divisible": 32,
    "image_mean": (0.485, 0.456, 0.406),  # (123.675, 116.28, 103.53) / 255
    "image_std": (0.229, 0.224, 0.225),  # (58.395, 57.12, 57.375) / 255
    "anchor_sizes": [(32.0,), (64.0,), (128.0,), (256.0,), (512.0,)],  # scale 8 x strides
    "aspect_ratios": (0.5, 1.0, 2.0),
    "anchor_strides": (4, 8, 16, 32, 64),
    "rpn_pre_nms_top_n": 1000,
    "rpn_post_nms_top_n": 1000,
    "rpn_nms_thresh": 0.7,
    "roi_featmaps": ("p2", "p3", "p4", "p5"),
    "roi_output_size": (7, 7),
    "roi_sampling_ratio": 0,
    "canonical": (224.0, 4),  # finest_scale 56 at P2 = 224 at P4
    "rpn_weights": (1.0, 1.0, 1.0, 1.0),  # stds (1, 1, 1, 1)
    "box_weights": (10.0, 10.0, 5.0, 5.0),  # stds (0.1, 0.1, 0.2, 0.2)
    "score_thresh": 0.05,
    "nms_thresh": 0.5,
    "detections_per_img": 100,
}


def mmdet_settings_mismatch(detector: nn.Module) -> list[str]:
    """Human-readable list of the inference settings of a visdet FasterRCNN that differ from
    MMDetection's Faster R-CNN R50-FPN (empty when they all match).

    Checked: resize (only when the detector resizes; ``min_size=None`` leaves it to the data
    pipeline), padding, normalisation, FPN norm and extra level, anchors (sizes, ratios,
    rounding, strides), RPN conv depth, pre/post-NMS counts and NMS threshold, RoIAlign
    (levels, output size, sampling ratio, alignment, level mapping), box head type, box coder
    weights, score threshold, NMS threshold and detections per image."""
    m = _MMDET
    out: list[str] = []

    def check(name: str, ours: object, theirs: object, note: str = "") -> None:
        if ours != theirs:
            out.append(f"{name} is {ours!r}, MMDetection uses {theirs!r}{note}")

    t = detector.transform
    if t.resize_images:
        check("transform resize (min_size, max_size)", (t.min_size[-1], t.max_size), m["resize"])
    check("transform size_divisible", t.size_divisible, m["size_divisible"])
    check("transform image_mean", _rounded(t.image_mean), m["image_mean"])
    check("transform image_std", _rounded(t.image_std), m["image_std"])
    neck = detector.neck
    check("neck (FPN) norm", getattr(neck, "norm", None), "none")
    check("neck (FPN) extra_blocks", getattr(neck, "extra_blocks", None), "maxpool")
    rpn = detector.rpn
    gen = rpn.anchor_generator
    check("anchor sizes", [tuple(float(v) for v in s) for s in gen.sizes], m["anchor_sizes"])
    for ratios in {tuple(float(v) for v in a) for a in gen.aspect_ratios}:
        check("anchor aspect_ratios", ratios, m["aspect_ratios"])
    check("anchor rounding (round_anchors)", gen.round_anchors, False)
    check(
        "anchor strides",
        gen.strides,
        m["anchor_strides"],
        " (None infers image_size // feature_size, which differs when the padded size is not "
        "a multiple of 64)",
    )
    n_convs = sum(isinstance(c, nn.Conv2d) for c in rpn.head.conv)
    check("RPN head convs", n_convs, 1)
    check("RPN pre-NMS top-n per level (test)", rpn.pre_nms_top_n["test"], m["rpn_pre_nms_top_n"])
    check("RPN post-NMS top-n (test)", rpn.post_nms_top_n["test"], m["rpn_post_nms_top_n"])
    check("RPN NMS threshold", rpn.nms_thresh, m["rpn_nms_thresh"])
    check("RPN box coder weights", rpn.box_coder.weights, m["rpn_weights"])
    roi = detector.roi_heads
    pool = roi.box_roi_pool
    check("RoIAlign feature maps", pool.featmap_names, m["roi_featmaps"])
    check("RoIAlign output size", pool.output_size, m["roi_output_size"])
    check(
        "RoIAlign sampling_ratio",
        pool.sampling_ratio if pool.sampling_ratio > 0 else 0,
        m["roi_sampling_ratio"],
    )
    check("RoIAlign aligned", pool.aligned, True)
    check(
        "RoIAlign level mapping (canonical_scale, canonical_level)",
        (float(pool.canonical_scale), int(pool.canonical_level)),
        m["canonical"],
    )
    if not isinstance(roi.box_head, TwoMLPHead):
        out.append(
            f"box head is {type(roi.box_head).__name__}, MMDetection's Shared2FCBBoxHead is "
            "TwoMLPHead"
        )
    check("RoI box coder weights", roi.box_coder.weights, m["box_weights"])
    check("RoI score threshold", roi.score_thresh, m["score_thresh"])
    check("RoI NMS threshold", roi.nms_thresh, m["nms_thresh"])
    check("detections per image", roi.detections_per_img, m["detections_per_img"])
    return out


def _rounded(values: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in values)
