"""Faster R-CNN (Ren et al. 2015): any backbone, a neck, the RPN and the RoI box head.

``faster_rcnn(num_classes, backbone, neck, ...)`` composes a detector from any backbone that
implements the contract (visdet.models.backbones.base) and a neck built for it; the named
variants (torchvision v1/v2, MMDetection-compatible, the CPU-sized main job) are presets in
``conf/model/`` and the family's knowledge (converters, LR groups, LoRA targets, benchmark
components) is its record ``FASTER_RCNN`` at the end of this file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import Tensor, nn

from visdet.models.backbones.base import Backbone
from visdet.models.backbones.resnet import ResNet
from visdet.models.detectors.family import Converter, DetectorFamily
from visdet.models.detectors.faster_rcnn_bench import BENCH_COMPONENTS
from visdet.models.detectors.inputs import as_image_list, check_targets
from visdet.models.detectors.transform import DetectionTransform
from visdet.models.heads.multiscale_roi_align import MultiScaleRoIAlign
from visdet.models.heads.roi_heads import ConvFCHead, FastRCNNPredictor, RoIHeads, TwoMLPHead
from visdet.models.heads.rpn import RPN, RPNHead, flatten_predictions
from visdet.models.necks.build import neck_for
from visdet.models.necks.fpn import FPN
from visdet.models.weights.convert.mmdet_faster_rcnn import (
    faster_rcnn_from_mmdet,
    mmdet_settings_mismatch,
)
from visdet.models.weights.convert.torchvision_faster_rcnn import faster_rcnn_from_torchvision
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
        backbone: a contract backbone returning a dict of stages (default: ResNet-50, stem
            and layer1 frozen, FrozenBatchNorm2d).
        neck: maps backbone features to the pyramid the heads use (default: FPN, 256).
        rpn: the region proposal network (default: RPN()).
        roi_heads: the box head (default: RoIHeads(), 80 classes).
        transform: normalisation, resizing and padding (default: 800/1333).
    """

    # the keys of head_outputs(), in order (the export's head graph outputs)
    HEAD_OUTPUTS = ("rpn_objectness", "rpn_deltas", "class_logits", "box_deltas")
    # the dense parts model.compile=true compiles (visdet.models.compile)
    COMPILE_TARGETS = (
        "backbone", "neck", "rpn.head", "roi_heads.box_head", "roi_heads.box_predictor",
    )  # fmt: skip

    def __init__(
        self,
        backbone: Backbone | None = None,
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
            check_targets(targets, len(images), self.num_classes)
        original_sizes = [(i.shape[-2], i.shape[-1]) for i in images]  # symbolic when exported
        batch, targets = self.transform(images, targets if self.training else None)
        features = self.neck(self.backbone(batch.tensor))
        gt_boxes = [t["boxes"] for t in targets] if targets is not None else None
        proposals, rpn_losses = self.rpn(list(features.values()), batch, gt_boxes)
        detections, roi_losses = self.roi_heads(features, proposals, batch, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    def head_outputs(self, images: Tensor | list[Tensor]) -> dict[str, Tensor]:
        """The heads' raw outputs before any post-processing, with shapes fixed by the image
        size (the export parity check compares them): the RPN's objectness [B, A] and deltas
        [B, A, 4] for every anchor, and the box head's class logits [B*P, K+1] and deltas
        [B*P, 4(K+1)] on a fixed grid of P probe boxes per image (``probe_boxes``) instead of
        the data-dependent proposals."""
        batch, _ = self.transform(as_image_list(images), None)
        return self.probe_outputs(self.neck(self.backbone(batch.tensor)), batch)

    def probe_outputs(self, features: dict[str, Tensor], batch) -> dict[str, Tensor]:
        """``head_outputs`` from the neck's features of the transformed ``batch``."""
        objectness, rpn_deltas = flatten_predictions(*self.rpn.head(list(features.values())))
        probes = [probe_boxes(h, w, objectness) for h, w in batch.image_sizes]
        pooled = self.roi_heads.box_roi_pool(features, probes, batch.padded_size)
        logits, deltas = self.roi_heads.box_predictor(self.roi_heads.box_head(pooled))
        return {
            "rpn_objectness": objectness,
            "rpn_deltas": rpn_deltas,
            "class_logits": logits,
            "box_deltas": deltas,
        }

    def param_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """Layer groups for discriminative LRs, shallowest first: the backbone's, then the
        family's (neck, rpn, heads)."""
        from visdet.models.families import family_of

        groups = [(n, tuple(f"backbone.{p}" for p in ps)) for n, ps in self.backbone.param_groups()]
        return groups + list(family_of(self).head_groups)

    def lora_targets(self) -> tuple[str, tuple[str, ...]]:
        """(pattern of the layers LoRA adapts by default, modules trained fully)."""
        from visdet.models.families import family_of

        family = family_of(self)
        pattern = rf"backbone\.(?:{self.backbone.lora_pattern})|{family.lora_pattern}"
        return pattern, family.lora_train_modules


def probe_boxes(height, width, like: Tensor, grid: int = 4) -> Tensor:
    """``grid`` x ``grid`` boxes [grid*grid, 4] tiling an image of ``height`` x ``width``
    (symbolic sizes allowed), each cell's box and, shifted by a quarter cell, half of them
    larger: fixed probe RoIs for comparing box heads."""
    step = torch.arange(grid, dtype=like.dtype, device=like.device) / grid
    y0, x0 = torch.meshgrid(step, step, indexing="ij")
    cells = torch.stack([x0, y0, x0 + 1 / grid, y0 + 1 / grid], -1).reshape(-1, 4)
    cells[1::2, 2:] = (cells[1::2, 2:] + 0.5 / grid).clamp(max=1.0)
    sx = torch.full((), width, dtype=like.dtype, device=like.device)
    sy = torch.full((), height, dtype=like.dtype, device=like.device)
    return cells * torch.stack([sx, sy, sx, sy])


def faster_rcnn(
    num_classes: int,
    backbone: Backbone,
    neck: Callable[..., nn.Module] = FPN,
    min_size: int | Sequence[int] | None = 800,
    max_size: int = 1333,
    anchor_sizes: Sequence[Sequence[float]] = ((32,), (64,), (128,), (256,), (512,)),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    anchor_round: bool = True,
    anchor_strides: Sequence[int] | None = None,
    rpn_num_convs: int = 1,
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 1000,
    rpn_batch_size_per_image: int = 256,
    box_head_convs: int = 0,
    box_head_norm: str = "bn",
    representation_size: int = 1024,
    box_batch_size_per_image: int = 512,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
    roi_align_sampling_ratio: int = 2,
    roi_align_aligned: bool = False,
    class_weights: Sequence[float] | str | None = None,
) -> FasterRCNN:
    """Faster R-CNN on ``backbone`` with ``neck`` built for it (a partial or class taking
    ``in_channels``, see visdet.models.necks.neck_for); defaults are torchvision's.

    ``num_classes`` counts object classes only (background excluded). Box head:
    ``box_head_convs=0`` is torchvision v1's two FCs of ``representation_size``; ``k > 0``
    is v2's k x (conv3x3 + ``box_head_norm`` + ReLU) then one FC. MMDetection's inference
    conventions: ``anchor_round=False``, ``anchor_strides=(4, 8, 16, 32, 64)``,
    ``roi_align_sampling_ratio=0``, ``roi_align_aligned=True``.

    ``class_weights``: None, or ``num_classes`` weights of the box classifier's cross-entropy
    (labels 1..num_classes; background 1; ``RoIHeads.losses`` gives the normalisation). The
    strings ``inverse_frequency`` / ``inverse_sqrt_frequency`` are config values that
    ``visdet train`` resolves into such a list from the training split before building.
    """
    neck_module = neck_for(backbone, neck)
    channels = neck_module.out_channels
    anchors = AnchorGenerator(
        anchor_sizes, aspect_ratios, round_anchors=anchor_round, strides=anchor_strides
    )
    if box_head_convs < 0:
        raise ValueError(f"box_head_convs must be >= 0, got {box_head_convs}")
    if box_head_convs == 0:
        box_head: nn.Module = TwoMLPHead(channels * 7 * 7, representation_size)
    else:
        box_head = ConvFCHead(
            channels, 7, (channels,) * box_head_convs, (representation_size,), norm=box_head_norm
        )
    rpn = RPN(
        RPNHead(channels, anchors.num_anchors_per_location()[0], num_convs=rpn_num_convs),
        anchors,
        batch_size_per_image=rpn_batch_size_per_image,
        pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        post_nms_top_n_train=rpn_post_nms_top_n_train,
        post_nms_top_n_test=rpn_post_nms_top_n_test,
    )
    roi_heads = RoIHeads(
        MultiScaleRoIAlign(
            neck_module.pyramid_features, 7, roi_align_sampling_ratio, aligned=roi_align_aligned
        ),
        box_head,
        FastRCNNPredictor(representation_size, num_classes),
        batch_size_per_image=box_batch_size_per_image,
        score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh,
        detections_per_img=box_detections_per_img,
        class_weights=class_weights,
    )
    transform = DetectionTransform(min_size, max_size, size_divisible=backbone.size_divisibility)
    return FasterRCNN(backbone, neck_module, rpn, roi_heads, transform)


def faster_rcnn_resnet_fpn(
    num_classes: int,
    depth: int = 50,
    frozen_stages: int = 1,
    norm: str = "frozen_bn",
    fpn_channels: int = 256,
    fpn_norm: str = "none",
    **settings,
) -> FasterRCNN:
    """Plain-PyTorch shortcut: Faster R-CNN on ResNet-``depth`` + FPN (torchvision's
    ``fasterrcnn_resnet50_fpn`` by default); ``settings`` are ``faster_rcnn``'s."""
    backbone = ResNet(depth=depth, frozen_stages=frozen_stages, norm=norm)
    neck = partial(FPN, out_channels=fpn_channels, extra_blocks="maxpool", norm=fpn_norm)
    return faster_rcnn(num_classes, backbone, neck, **settings)


FASTER_RCNN = DetectorFamily(
    name="faster_rcnn",
    detector=FasterRCNN,
    presets=(
        "faster_rcnn",
        "faster_rcnn_r18_fpn",
        "faster_rcnn_r50_fpn",
        "faster_rcnn_r50_fpn_v2",
        "faster_rcnn_r50_fpn_mmdet",
    ),
    head_groups=(("neck", ("neck.",)), ("rpn", ("rpn.",)), ("heads", ("roi_heads.",))),
    lora_pattern=r"neck\.|rpn\.head\.conv|roi_heads\.box_head",
    lora_train_modules=(r"roi_heads\.box_predictor",),
    class_specific=("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred."),
    converters=(
        Converter(
            "torchvision",
            "torchvision",
            "a torchvision fasterrcnn_resnet50_fpn(_v2) state dict (backbone.body.*)",
            lambda state: any(k.startswith("backbone.body.") for k in state),
            faster_rcnn_from_torchvision,
        ),
        Converter(
            "mmdet",
            "MMDetection",
            "an MMDetection Faster R-CNN R50-FPN checkpoint (rpn_head.*, roi_head.*)",
            lambda state: any(k.startswith(("roi_head.", "rpn_head.")) for k in state),
            faster_rcnn_from_mmdet,
            mmdet_settings_mismatch,
        ),
    ),
    bench_components=BENCH_COMPONENTS,
)
