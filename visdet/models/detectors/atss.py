"""ATSS (Zhang et al. 2020, "Bridging the Gap Between Anchor-based and Anchor-free
Detection"): RetinaNet's pyramid with one square anchor per location, positives chosen by
adaptive training sample selection, GIoU weighted by centerness, MMDetection's settings.

``atss(num_classes, backbone, neck, ...)`` composes the detector (defaults: MMDetection's
``atss_r50_fpn_1x_coco``: anchors 8 x stride on P3..P7, 4 GroupNorm convs per tower, delta
coding with stds (0.1, 0.1, 0.2, 0.2), score 0.05, NMS 0.6, 100 detections); presets in
``conf/model/atss*.yaml``; the family's record ``ATSS_FAMILY`` is at the end.

Scores are ``sigmoid(class) * sigmoid(centerness)`` as MMDetection computes them: the class
probability is thresholded and ranked (top-k per level), then multiplied by the centerness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from visdet.models.backbones.base import Backbone
from visdet.models.detectors.dense_bench import bench_backbone_and_neck, dense_bench_components
from visdet.models.detectors.dense_detector import (
    DENSE_LEVELS,
    DenseDetector,
    check_focal,
    check_neck_levels,
)
from visdet.models.detectors.family import DetectorFamily
from visdet.models.detectors.transform import DetectionTransform
from visdet.models.heads.atss_head import ATSSHead
from visdet.models.heads.atss_loss import atss_assign, atss_losses
from visdet.models.necks.build import neck_for
from visdet.models.necks.fpn import FPN
from visdet.ops import AnchorGenerator, BoxCoder


class ATSS(DenseDetector):
    """See ``DenseDetector``; losses ``loss_cls`` (focal), ``loss_box`` (centerness-weighted
    GIoU) and ``loss_ctr`` (centerness BCE).

    Args (beyond DenseDetector's): topk (candidates per level and box), focal_alpha,
    focal_gamma, box_loss_weight.
    """

    HEAD_OUTPUTS = ("cls_logits", "bbox_regression", "bbox_ctrness")

    def __init__(self, backbone: Backbone, neck: nn.Module, head: ATSSHead,
                 anchor_generator: AnchorGenerator, transform: DetectionTransform,
                 levels: Sequence[str] = DENSE_LEVELS, topk: int = 9, focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, box_loss_weight: float = 2.0,
                 **postprocess) -> None:  # fmt: skip
        super().__init__(backbone, neck, head, anchor_generator, transform, head.num_classes,
                         levels, **postprocess)  # fmt: skip
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        check_focal(focal_alpha, focal_gamma)
        self.topk = topk
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_loss_weight = box_loss_weight
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))

    def losses(self, outputs, anchors, targets) -> dict[str, Tensor]:
        counts = [a.shape[0] for a in anchors]
        flat = torch.cat(anchors)
        matched = [atss_assign(flat, counts, t["boxes"], self.topk) for t in targets]
        losses = atss_losses(outputs, flat, targets, matched, self.box_coder, self.focal_alpha,
                             self.focal_gamma, self.box_loss_weight)  # fmt: skip
        return {"loss_cls": losses["classification"], "loss_box": losses["bbox_regression"],
                "loss_ctr": losses["bbox_ctrness"]}  # fmt: skip

    def level_scores(self, outputs: dict[str, Tensor]) -> Tensor:
        return torch.sigmoid(outputs["cls_logits"])

    def score_factors(self, outputs: dict[str, Tensor]) -> Tensor:
        return torch.sigmoid(outputs["bbox_ctrness"]).squeeze(dim=-1)


def atss(
    num_classes: int,
    backbone: Backbone,
    neck: Callable[..., nn.Module] = FPN,
    levels: Sequence[str] = DENSE_LEVELS,
    min_size: int | Sequence[int] | None = 800,
    max_size: int = 1333,
    anchor_sizes: Sequence[float] = (64, 128, 256, 512, 1024),
    head_num_convs: int = 4,
    prior_probability: float = 0.01,
    topk: int = 9,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    box_loss_weight: float = 2.0,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.6,
    detections_per_img: int = 100,
    topk_candidates: int = 1000,
) -> ATSS:
    """ATSS on ``backbone`` with ``neck`` built for it; defaults are MMDetection's
    ``atss_r50_fpn_1x_coco``. ``anchor_sizes``: one square anchor per location and level
    (MMDetection's octave_base_scale 8 x the strides 8..128)."""
    neck_module = neck_for(backbone, neck)
    check_neck_levels("atss", neck_module, levels)
    anchors = AnchorGenerator([(s,) for s in anchor_sizes], [(1.0,)] * len(anchor_sizes),
                              round_anchors=False)  # fmt: skip
    head = ATSSHead(neck_module.out_channels, 1, num_classes, head_num_convs, prior_probability,
                    len(levels))  # fmt: skip
    transform = DetectionTransform(min_size, max_size, size_divisible=backbone.size_divisibility)
    return ATSS(backbone, neck_module, head, anchors, transform, levels, topk, focal_alpha,
                focal_gamma, box_loss_weight, score_thresh=score_thresh, nms_thresh=nms_thresh,
                detections_per_img=detections_per_img,
                topk_candidates=topk_candidates)  # fmt: skip


def _bench_atss(num_classes: int, channels: int) -> ATSS:
    """The benchmark's ATSS: ResNet-18, FPN P3-P7 of ``channels``, anchors 4 x stride."""
    return atss(num_classes, *bench_backbone_and_neck(channels), min_size=None,
                anchor_sizes=(32, 64, 128, 256, 512))  # fmt: skip


ATSS_FAMILY = DetectorFamily(
    name="atss",
    detector=ATSS,
    presets=("atss", "atss_r18_fpn"),
    head_groups=(("neck", ("neck.",)), ("head", ("head.",))),
    lora_pattern=r"neck\.|head\.(?:cls|reg)_tower",
    lora_train_modules=(r"head\.cls_logits",),
    class_specific=("head.cls_logits.",),
    bench_components=dense_bench_components("atss", _bench_atss),
)
