"""Faster R-CNN (Ren et al. 2015) with a ResNet-FPN backbone, assembled from plain modules."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from visdet.models.backbones.resnet import ResNet
from visdet.models.detectors.inputs import as_image_list, check_targets
from visdet.models.detectors.transform import DetectionTransform
from visdet.models.heads.multiscale_roi_align import MultiScaleRoIAlign
from visdet.models.heads.roi_heads import (
    ConvFCHead,
    FastRCNNPredictor,
    RoIHeads,
    TwoMLPHead,
)
from visdet.models.heads.rpn import RPN, RPNHead
from visdet.models.necks.fpn import FPN
from visdet.ops import AnchorGenerator


class FasterRCNN(nn.Module):
    """Backbone -> neck -> RPN -> RoI heads, with input transform and output mapping.

    ``model(images, targets=None)``: images are a list of Tensor[3, H, W] (sizes may differ)
    or a Tensor[B, 3, H, W], RGB floats in [0, 1]; targets (training) are one dict per image
    with ``boxes`` float [N, 4] xyxy in that image's pixels and ``labels`` int64 [N] in
    1..num_classes. Training mode returns a dict of scalar losses (``loss_rpn_cls``,
    ``loss_rpn_box``, ``loss_cls``, ``loss_box``); eval mode returns one dict per image with
    ``boxes`` [D, 4] in the input image's pixels, ``scores`` [D] and ``labels`` [D].

    Args:
        backbone: returns a dict of feature maps (default: ResNet-50, stem and layer1 frozen,
            FrozenBatchNorm2d).
        neck: maps backbone features to the pyramid the heads use (default: FPN, 256).
        rpn: the region proposal network (default: RPN()).
        roi_heads: the box head (default: RoIHeads(), 80 classes).
        transform: normalisation, resizing and padding (default: 800/1333).
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        neck: nn.Module | None = None,
        rpn: RPN | None = None,
        roi_heads: RoIHeads | None = None,
        transform: DetectionTransform | None = None,
    ) -> None:
        super().__init__()
        self.backbone = (
            backbone if backbone is not None else ResNet(50, frozen_stages=1, norm="frozen_bn")
        )
        self.neck = neck if neck is not None else FPN()
        self.rpn = rpn if rpn is not None else RPN()
        self.roi_heads = roi_heads if roi_heads is not None else RoIHeads()
        self.transform = transform if transform is not None else DetectionTransform()
        self.num_classes = self.roi_heads.num_classes

    def forward(
        self, images: Tensor | list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ):
        images = as_image_list(images)
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode (one dict per image)")
            check_targets(targets, len(images), self.num_classes)
        original_sizes = [(int(i.shape[-2]), int(i.shape[-1])) for i in images]
        batch, sizes, targets = self.transform(images, targets if self.training else None)
        padded = (int(batch.shape[-2]), int(batch.shape[-1]))
        features = self.neck(self.backbone(batch))
        gt_boxes = [t["boxes"] for t in targets] if targets is not None else None
        proposals, rpn_losses = self.rpn(list(features.values()), sizes, padded, gt_boxes)
        detections, roi_losses = self.roi_heads(features, proposals, sizes, padded, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.transform.postprocess(detections, sizes, original_sizes)


def faster_rcnn_resnet_fpn(
    num_classes: int,
    depth: int = 50,
    frozen_stages: int = 1,
    norm: str = "frozen_bn",
    fpn_channels: int = 256,
    min_size: int | Sequence[int] | None = 800,
    max_size: int = 1333,
    anchor_sizes: Sequence[Sequence[float]] = ((32,), (64,), (128,), (256,), (512,)),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 1000,
    rpn_batch_size_per_image: int = 256,
    box_batch_size_per_image: int = 512,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    representation_size: int = 1024,
    fpn_norm: str = "none",
    rpn_num_convs: int = 1,
    box_head_convs: int = 0,
    box_head_norm: str = "bn",
    anchor_round: bool = True,
    anchor_strides: Sequence[int] | None = None,
    roi_align_sampling_ratio: int = 2,
    roi_align_aligned: bool = False,
) -> FasterRCNN:
    """Faster R-CNN with a ResNet-``depth`` + FPN backbone and torchvision's defaults.

    ``num_classes`` counts object classes only (background excluded). ``frozen_stages=1``
    freezes the stem and layer1 (torchvision's ``trainable_layers=3``).

    Variants (defaults: torchvision's ``fasterrcnn_resnet50_fpn``, v1):

    - torchvision ``fasterrcnn_resnet50_fpn_v2``: ``norm="bn"``, ``fpn_norm="bn"``,
      ``rpn_num_convs=2``, ``box_head_convs=4`` (box head: 4 x conv3x3 + BatchNorm + ReLU,
      then one FC of ``representation_size``; ``box_head_norm="none"`` gives convs with bias).
    - MMDetection's Faster R-CNN R50-FPN inference: ``anchor_round=False``,
      ``anchor_strides=(4, 8, 16, 32, 64)``, ``roi_align_sampling_ratio=0``,
      ``roi_align_aligned=True``.
    """
    backbone = ResNet(depth=depth, frozen_stages=frozen_stages, norm=norm)
    neck = FPN(
        [backbone.out_channels[s] for s in ("c2", "c3", "c4", "c5")],
        fpn_channels,
        extra_blocks="maxpool",
        norm=fpn_norm,
    )
    anchors = AnchorGenerator(
        anchor_sizes, aspect_ratios, round_anchors=anchor_round, strides=anchor_strides
    )
    if box_head_convs < 0:
        raise ValueError(f"box_head_convs must be >= 0, got {box_head_convs}")
    if box_head_convs == 0:
        box_head: nn.Module = TwoMLPHead(fpn_channels * 7 * 7, representation_size)
    else:
        box_head = ConvFCHead(
            fpn_channels,
            7,
            (fpn_channels,) * box_head_convs,
            (representation_size,),
            norm=box_head_norm,
        )
    rpn = RPN(
        RPNHead(fpn_channels, anchors.num_anchors_per_location()[0], num_convs=rpn_num_convs),
        anchors,
        batch_size_per_image=rpn_batch_size_per_image,
        pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        post_nms_top_n_train=rpn_post_nms_top_n_train,
        post_nms_top_n_test=rpn_post_nms_top_n_test,
    )
    roi_heads = RoIHeads(
        MultiScaleRoIAlign(
            ("p2", "p3", "p4", "p5"), 7, roi_align_sampling_ratio, aligned=roi_align_aligned
        ),
        box_head,
        FastRCNNPredictor(representation_size, num_classes),
        batch_size_per_image=box_batch_size_per_image,
        score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh,
        detections_per_img=box_detections_per_img,
    )
    return FasterRCNN(backbone, neck, rpn, roi_heads, DetectionTransform(min_size, max_size))
