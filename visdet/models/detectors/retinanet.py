"""RetinaNet (Lin et al. 2017): any backbone, a neck giving P3-P7, the dense RetinaNet head,
anchors at three scales per octave, focal loss.

``retinanet(num_classes, backbone, neck, ...)`` composes the detector (defaults:
torchvision's ``retinanet_resnet50_fpn``); the named variants (torchvision v1/v2, the
CPU-sized preset) are in ``conf/model/retinanet*.yaml``, the family's knowledge (converters,
LR groups, LoRA targets, benchmark components) is its record ``RETINANET`` at the end.
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
from visdet.models.detectors.transform import DetectionTransform
from visdet.models.heads.retinanet_head import RetinaNetHead
from visdet.models.heads.retinanet_loss import BOX_LOSSES, match_anchors, retinanet_losses
from visdet.models.necks.build import neck_for
from visdet.models.necks.fpn import FPN
from visdet.models.weights.convert.mmdet_retinanet import is_mmdet_retinanet, retinanet_from_mmdet
from visdet.models.weights.convert.torchvision_dense import (
    is_torchvision_dense,
    retinanet_from_torchvision,
)
from visdet.ops import AnchorGenerator, BoxCoder, Matcher


def octave_sizes(base: float, scales: int = 3, truncate: bool = True) -> tuple[float, ...]:
    """One level's anchor sizes ``base * 2 ** (i / scales)``: truncated to integers as
    torchvision (32 -> 32, 40, 50) or not as MMDetection (32 -> 32, 40.3, 50.8)."""
    sizes = [base * 2 ** (i / scales) for i in range(scales)]
    return tuple(float(int(s)) if truncate else s for s in sizes)


class RetinaNet(DenseDetector):
    """See ``DenseDetector``; losses ``loss_cls`` (focal) and ``loss_box``.

    Args (beyond DenseDetector's):
        fg_iou_thresh, bg_iou_thresh: anchor matching (foreground >=, background <;
            low-quality matches allowed).
        box_loss: ``l1`` (torchvision v1), ``giou`` (v2), ``smooth_l1``, ``diou``, ``ciou``.
        focal_alpha, focal_gamma: the focal loss' settings.
    """

    HEAD_OUTPUTS = ("cls_logits", "bbox_regression")

    def __init__(self, backbone: Backbone, neck: nn.Module, head: RetinaNetHead,
                 anchor_generator: AnchorGenerator, transform: DetectionTransform,
                 levels: Sequence[str] = DENSE_LEVELS, fg_iou_thresh: float = 0.5,
                 bg_iou_thresh: float = 0.4, box_loss: str = "l1", focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, **postprocess) -> None:  # fmt: skip
        super().__init__(backbone, neck, head, anchor_generator, transform,
                         head.classification_head.num_classes, levels, **postprocess)  # fmt: skip
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {list(BOX_LOSSES)}, got {box_loss!r}")
        check_focal(focal_alpha, focal_gamma)
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.box_loss = box_loss
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def losses(self, outputs, anchors, targets) -> dict[str, Tensor]:
        per_image = [torch.cat(anchors)] * len(targets)
        matched = match_anchors(per_image, [t["boxes"] for t in targets], self.matcher)
        losses = retinanet_losses(outputs["cls_logits"], outputs["bbox_regression"], per_image,
                                  targets, matched, self.box_coder, self.box_loss,
                                  self.focal_alpha, self.focal_gamma)  # fmt: skip
        return {"loss_cls": losses["classification"], "loss_box": losses["bbox_regression"]}

    def level_scores(self, outputs: dict[str, Tensor]) -> Tensor:
        return torch.sigmoid(outputs["cls_logits"])


def retinanet(
    num_classes: int,
    backbone: Backbone,
    neck: Callable[..., nn.Module] = FPN,
    levels: Sequence[str] = DENSE_LEVELS,
    min_size: int | Sequence[int] | None = 800,
    max_size: int = 1333,
    anchor_sizes: Sequence[Sequence[float]] | None = None,
    anchor_base_sizes: Sequence[float] = (32, 64, 128, 256, 512),
    scales_per_octave: int = 3,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    anchor_round: bool = True,
    anchor_strides: Sequence[int] | None = None,
    head_num_convs: int = 4,
    head_norm: str = "none",
    prior_probability: float = 0.01,
    fg_iou_thresh: float = 0.5,
    bg_iou_thresh: float = 0.4,
    box_loss: str = "l1",
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 300,
    topk_candidates: int = 1000,
) -> RetinaNet:
    """RetinaNet on ``backbone`` with ``neck`` built for it; defaults are torchvision's
    ``retinanet_resnet50_fpn`` (v1). Anchors: ``anchor_sizes`` per level, or
    ``scales_per_octave`` sizes per level from ``anchor_base_sizes`` (``octave_sizes``).
    v2: ``head_norm="group"``, ``box_loss="giou"`` and P6 from C5 (``neck.p6p7_from=c5``).
    MMDetection's anchors: ``anchor_round=False`` (sizes and corners not rounded) and
    ``anchor_strides=(8, 16, 32, 64, 128)``."""
    neck_module = neck_for(backbone, neck)
    check_neck_levels("retinanet", neck_module, levels)
    if anchor_sizes is None:
        anchor_sizes = [octave_sizes(b, scales_per_octave, anchor_round) for b in anchor_base_sizes]
    anchors = AnchorGenerator(anchor_sizes, aspect_ratios, anchor_round, anchor_strides)
    head = RetinaNetHead(neck_module.out_channels, anchors.num_anchors_per_location()[0],
                         num_classes, prior_probability, head_num_convs, head_norm)  # fmt: skip
    transform = DetectionTransform(min_size, max_size, size_divisible=backbone.size_divisibility)
    return RetinaNet(backbone, neck_module, head, anchors, transform, levels, fg_iou_thresh,
                     bg_iou_thresh, box_loss, focal_alpha, focal_gamma,
                     score_thresh=score_thresh, nms_thresh=nms_thresh,
                     detections_per_img=detections_per_img,
                     topk_candidates=topk_candidates)  # fmt: skip


def _bench_retinanet(num_classes: int, channels: int) -> RetinaNet:
    """The benchmark's RetinaNet: ResNet-18, FPN P3-P7 of ``channels``, anchors 16..256."""
    return retinanet(num_classes, *bench_backbone_and_neck(channels), min_size=None,
                     anchor_base_sizes=(16, 32, 64, 128, 256))  # fmt: skip


RETINANET = DetectorFamily(
    name="retinanet",
    detector=RetinaNet,
    presets=(
        "retinanet",
        "retinanet_r18_fpn",
        "retinanet_r50_fpn",
        "retinanet_r50_fpn_v2",
        "retinanet_r50_fpn_mmdet",
    ),
    head_groups=(("neck", ("neck.",)), ("head", ("head.",))),
    lora_pattern=r"neck\.|head\.(?:classification|regression)_head\.conv",
    lora_train_modules=(r"head\.classification_head\.cls_logits",),
    class_specific=("head.classification_head.cls_logits.",),
    converters=(
        Converter(
            "torchvision",
            "torchvision",
            "a torchvision retinanet_resnet50_fpn(_v2) state dict (backbone.body.*, head.*)",
            lambda state: is_torchvision_dense(state, "retinanet"),
            retinanet_from_torchvision,
        ),
        Converter(
            "mmdet",
            "MMDetection",
            "an MMDetection RetinaNet R50-FPN checkpoint (bbox_head.retina_cls.*)",
            is_mmdet_retinanet,
            retinanet_from_mmdet,
        ),
    ),
    bench_components=dense_bench_components("retinanet", _bench_retinanet),
)
