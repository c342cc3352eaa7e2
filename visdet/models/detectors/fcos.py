"""FCOS (Tian et al. 2019): any backbone, a neck giving P3-P7, the anchor-free FCOS head
(GroupNorm towers, distances to the four sides, centerness), centre sampling, GIoU.

``fcos(num_classes, backbone, neck, ...)`` composes the detector (defaults: torchvision's
``fcos_resnet50_fpn``); presets in ``conf/model/fcos*.yaml``; the family's record ``FCOS_FAMILY``
is at the end. Each location is one stride-sized "anchor" (sizes 8..128 on P3..P7), so the
anchor generator, post-processing and export are the shared ones.

MMDetection's FCOS (``fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou``, preset
``fcos_r50_fpn_mmdet``) is the same network with a learnable scale per level
(``level_scales``), points at the cell centres (``anchor_offset`` 0.5, fixed
``anchor_strides``), ``score_mode="factor"`` (the class probability thresholded and ranked,
then multiplied by the centerness), the box loss weighted by the centerness targets, and a
caffe-style ResNet fed BGR images (``channel_order``, ``image_mean``, ``image_std``).
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
from visdet.models.detectors.family import Converter, DetectorFamily
from visdet.models.detectors.transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform
from visdet.models.heads.fcos_head import FCOSHead
from visdet.models.heads.fcos_loss import fcos_losses, match_points
from visdet.models.necks.build import neck_for
from visdet.models.necks.fpn import FPN
from visdet.models.weights.convert.mmdet_fcos import fcos_from_mmdet, is_mmdet_fcos
from visdet.models.weights.convert.torchvision_dense import (
    fcos_from_torchvision,
    is_torchvision_dense,
)
from visdet.ops import AnchorGenerator, BoxLinearCoder


class FCOS(DenseDetector):
    """See ``DenseDetector``; losses ``loss_cls`` (focal), ``loss_box`` (GIoU) and
    ``loss_ctr`` (centerness BCE); scores ``sqrt(sigmoid(class) * sigmoid(centerness))``.

    Args (beyond DenseDetector's): center_sampling_radius (in anchor sizes = strides),
    focal_alpha, focal_gamma; score_mode ``"sqrt"`` (torchvision: threshold and rank
    ``sqrt(sigmoid(class) * sigmoid(centerness))``) or ``"factor"`` (MMDetection: threshold
    and rank ``sigmoid(class)``, then multiply by ``sigmoid(centerness)``);
    centerness_weighted_box_loss (MMDetection: GIoU weighted by the centerness targets).
    """

    HEAD_OUTPUTS = ("cls_logits", "bbox_regression", "bbox_ctrness")

    def __init__(self, backbone: Backbone, neck: nn.Module, head: FCOSHead,
                 anchor_generator: AnchorGenerator, transform: DetectionTransform,
                 levels: Sequence[str] = DENSE_LEVELS, center_sampling_radius: float = 1.5,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 score_mode: str = "sqrt", centerness_weighted_box_loss: bool = False,
                 **postprocess) -> None:  # fmt: skip
        super().__init__(backbone, neck, head, anchor_generator, transform,
                         head.classification_head.num_classes, levels, **postprocess)  # fmt: skip
        if center_sampling_radius <= 0:
            raise ValueError(f"center_sampling_radius must be > 0, got {center_sampling_radius}")
        check_focal(focal_alpha, focal_gamma)
        if score_mode not in ("sqrt", "factor"):
            raise ValueError(f"score_mode must be 'sqrt' or 'factor', got {score_mode!r}")
        self.score_mode = score_mode
        self.centerness_weighted_box_loss = centerness_weighted_box_loss
        self.center_sampling_radius = center_sampling_radius
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_coder = BoxLinearCoder(normalize_by_size=True)

    def losses(self, outputs, anchors, targets) -> dict[str, Tensor]:
        counts = [a.shape[0] for a in anchors]
        flat = torch.cat(anchors)
        matched = [match_points(flat, t["boxes"], counts, self.center_sampling_radius)
                   for t in targets]  # fmt: skip
        losses = fcos_losses(outputs, flat, targets, matched, self.box_coder, self.focal_alpha,
                             self.focal_gamma, self.centerness_weighted_box_loss)  # fmt: skip
        return {"loss_cls": losses["classification"], "loss_box": losses["bbox_regression"],
                "loss_ctr": losses["bbox_ctrness"]}  # fmt: skip

    def level_scores(self, outputs: dict[str, Tensor]) -> Tensor:
        if self.score_mode == "factor":
            return torch.sigmoid(outputs["cls_logits"])
        return torch.sqrt(torch.sigmoid(outputs["cls_logits"])
                          * torch.sigmoid(outputs["bbox_ctrness"]))  # fmt: skip

    def score_factors(self, outputs: dict[str, Tensor]) -> Tensor | None:
        if self.score_mode == "factor":
            return torch.sigmoid(outputs["bbox_ctrness"]).squeeze(dim=-1)
        return None


def fcos(
    num_classes: int,
    backbone: Backbone,
    neck: Callable[..., nn.Module] = FPN,
    levels: Sequence[str] = DENSE_LEVELS,
    min_size: int | Sequence[int] | None = 800,
    max_size: int = 1333,
    anchor_sizes: Sequence[float] = (8, 16, 32, 64, 128),
    anchor_strides: Sequence[int] | None = None,
    anchor_offset: float = 0.0,
    head_num_convs: int = 4,
    head_level_scales: bool = False,
    prior_probability: float = 0.01,
    center_sampling_radius: float = 1.5,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    centerness_weighted_box_loss: bool = False,
    score_mode: str = "sqrt",
    score_thresh: float = 0.2,
    nms_thresh: float = 0.6,
    detections_per_img: int = 100,
    topk_candidates: int = 1000,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
    channel_order: str = "rgb",
) -> FCOS:
    """FCOS on ``backbone`` with ``neck`` built for it; defaults are torchvision's
    ``fcos_resnet50_fpn``. ``anchor_sizes``: one square per location and level, the level's
    stride (the unit of the box distances and of the scale ranges 4x..8x);
    ``anchor_strides``: fixed strides (MMDetection) instead of image // feature size;
    ``anchor_offset``: point centres at (i + offset) x stride; ``head_level_scales``: a
    learnable scale per level on the box distances (MMDetection); image_mean/std and
    channel_order: ``DetectionTransform``'s."""
    neck_module = neck_for(backbone, neck)
    check_neck_levels("fcos", neck_module, levels)
    anchors = AnchorGenerator([(s,) for s in anchor_sizes], [(1.0,)] * len(anchor_sizes),
                              strides=anchor_strides, offset=anchor_offset)  # fmt: skip
    head = FCOSHead(neck_module.out_channels, 1, num_classes, head_num_convs, prior_probability,
                    len(levels) if head_level_scales else 0)  # fmt: skip
    transform = DetectionTransform(min_size, max_size, image_mean, image_std,
                                   backbone.size_divisibility,
                                   channel_order=channel_order)  # fmt: skip
    return FCOS(backbone, neck_module, head, anchors, transform, levels,
                center_sampling_radius, focal_alpha, focal_gamma, score_mode,
                centerness_weighted_box_loss, score_thresh=score_thresh,
                nms_thresh=nms_thresh, detections_per_img=detections_per_img,
                topk_candidates=topk_candidates)  # fmt: skip


def _bench_fcos(num_classes: int, channels: int) -> FCOS:
    """The benchmark's FCOS: ResNet-18, FPN P3-P7 of ``channels``."""
    return fcos(num_classes, *bench_backbone_and_neck(channels), min_size=None)


FCOS_FAMILY = DetectorFamily(
    name="fcos",
    detector=FCOS,
    presets=("fcos", "fcos_r18_fpn", "fcos_r50_fpn", "fcos_r50_fpn_mmdet"),
    head_groups=(("neck", ("neck.",)), ("head", ("head.",))),
    lora_pattern=r"neck\.|head\.(?:classification|regression)_head\.conv",
    lora_train_modules=(r"head\.classification_head\.cls_logits",),
    class_specific=("head.classification_head.cls_logits.",),
    converters=(
        Converter(
            "torchvision",
            "torchvision",
            "a torchvision fcos_resnet50_fpn state dict (backbone.body.*, head.*)",
            lambda state: is_torchvision_dense(state, "fcos"),
            fcos_from_torchvision,
        ),
        Converter(
            "mmdet",
            "MMDetection",
            "an MMDetection FCOS R50-FPN checkpoint with a GN head (bbox_head.conv_centerness.*)",
            is_mmdet_fcos,
            fcos_from_mmdet,
        ),
    ),
    bench_components=dense_bench_components("fcos", _bench_fcos),
)
