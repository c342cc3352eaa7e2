"""Mask R-CNN (He et al. 2017): Faster R-CNN plus a mask branch on the RoI features.

``mask_rcnn(num_classes, backbone, neck, ...)`` composes the detector: ``faster_rcnn``'s
detector (every Faster R-CNN setting applies) with ``MaskRoIHeads`` (a 14 x 14 RoIAlign on the
box pooler's levels, the 4-conv mask head, the deconvolution predictor of 28 x 28 masks per
class). Defaults are torchvision's ``maskrcnn_resnet50_fpn``; presets in
``conf/model/mask_rcnn*.yaml``; the family's record ``MASK_RCNN`` is at the end.

Training targets add ``masks`` [N, H, W] (0/1, uint8 or bool) to ``boxes`` and ``labels``.
Eval detections add ``masks`` [D, 1, H, W] in the input image's pixels: each detection's class
mask pasted into the image (``visdet.ops.paste_masks_in_image``), probabilities as torchvision
gives them, or bool masks above ``mask_threshold`` when it is set (a quarter of the memory).
``MaskRCNN.unpasted(images)`` gives the detections before pasting (``masks`` [D, M, M]): what
the exported graph returns (``visdet.export.detector_graph``), pasted by its caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from visdet.models.backbones.base import Backbone
from visdet.models.detectors.family import Converter, DetectorFamily
from visdet.models.detectors.faster_rcnn import FASTER_RCNN, FasterRCNN, faster_rcnn, probe_boxes
from visdet.models.detectors.inputs import as_image_list, check_masks
from visdet.models.detectors.mask_rcnn_bench import MASK_BENCH_COMPONENTS
from visdet.models.detectors.transform import DetectionTransform
from visdet.models.heads.mask_head import MaskHead, MaskPredictor
from visdet.models.heads.mask_roi_heads import MaskRoIHeads
from visdet.models.heads.multiscale_roi_align import MultiScaleRoIAlign
from visdet.models.heads.rpn import RPN
from visdet.models.necks.fpn import FPN
from visdet.models.weights.convert.mmdet_mask_rcnn import (
    is_mmdet_mask_rcnn,
    mask_rcnn_from_mmdet,
    mmdet_mask_settings_mismatch,
)
from visdet.models.weights.convert.torchvision_mask_rcnn import (
    is_torchvision_mask_rcnn,
    mask_rcnn_from_torchvision,
)
from visdet.ops import paste_masks_grid_sample, paste_masks_in_image

MASK_PASTES = {"torchvision": paste_masks_in_image, "grid_sample": paste_masks_grid_sample}


class MaskRCNN(FasterRCNN):
    """See the module docstring; ``roi_heads`` is a ``MaskRoIHeads``. Training adds
    ``loss_mask`` to Faster R-CNN's losses.

    Args (beyond FasterRCNN's): mask_threshold: None (pasted probabilities, torchvision) or a
    threshold in [0, 1) giving bool masks; mask_paste: "torchvision" (``paste_masks_in_image``,
    bool masks above the threshold) or "grid_sample" (MMDetection's and Detectron2's
    ``paste_masks_grid_sample``, bool masks at or above it).
    """

    COMPILE_TARGETS = (
        *FasterRCNN.COMPILE_TARGETS,
        "roi_heads.mask_head",
        "roi_heads.mask_predictor",
    )

    HEAD_OUTPUTS = (*FasterRCNN.HEAD_OUTPUTS, "mask_logits")

    def __init__(self, backbone: Backbone, neck: nn.Module, rpn: RPN, roi_heads: MaskRoIHeads,
                 transform: DetectionTransform,
                 mask_threshold: float | None = None,
                 mask_paste: str = "torchvision") -> None:  # fmt: skip
        if not isinstance(roi_heads, MaskRoIHeads):
            raise TypeError(f"MaskRCNN needs MaskRoIHeads, got {type(roi_heads).__name__}")
        if mask_threshold is not None and not 0 <= mask_threshold < 1:
            raise ValueError(f"mask_threshold must be null or in [0, 1), got {mask_threshold}")
        if mask_paste not in MASK_PASTES:
            raise ValueError(f"mask_paste must be one of {list(MASK_PASTES)}, got {mask_paste!r}")
        super().__init__(backbone, neck, rpn, roi_heads, transform)
        self.mask_threshold = mask_threshold
        self.mask_paste = mask_paste

    def forward(
        self, images: Tensor | list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ):
        images = as_image_list(images)
        if self.training:
            if targets is not None:
                check_masks(targets, images)
            return super().forward(images, targets)
        out = self.unpasted(images)
        for det, image in zip(out, images, strict=True):
            paste = MASK_PASTES[self.mask_paste]
            pasted = paste(det["masks"], det["boxes"], tuple(image.shape[-2:]),
                           threshold=self.mask_threshold)  # fmt: skip
            det["masks"] = pasted[:, None]
        return out

    def unpasted(self, images: Tensor | list[Tensor]) -> list[dict[str, Tensor]]:
        """The eval detections before pasting: per image ``boxes`` [D, 4] (the input image's
        pixels), ``scores`` [D], ``labels`` [D] and ``masks`` [D, M, M], each detection's class
        mask probabilities in its box's frame; ``forward`` pastes them (``mask_paste``,
        ``mask_threshold``). Fixed-size per detection: what the exported graph returns
        (``visdet.export.detector_graph``). Eval mode only."""
        if self.training:
            raise ValueError("MaskRCNN.unpasted needs eval mode (call .eval() first)")
        out = super().forward(as_image_list(images))
        for det in out:
            det["masks"] = det["masks"][:, 0]
        return out

    def probe_outputs(self, features: dict[str, Tensor], batch) -> dict[str, Tensor]:
        """Faster R-CNN's probe outputs plus the mask logits [B*P, K + 1, M, M] of the same
        probe boxes."""
        out = super().probe_outputs(features, batch)
        like = out["rpn_objectness"]
        probes = [probe_boxes(h, w, like) for h, w in batch.image_sizes]
        out["mask_logits"] = self.roi_heads.mask_logits(features, probes, batch)
        return out


def mask_rcnn(
    num_classes: int,
    backbone: Backbone,
    neck: Callable[..., nn.Module] = FPN,
    mask_layers: Sequence[int] = (256, 256, 256, 256),
    mask_dilation: int = 1,
    mask_head_norm: str = "none",
    mask_dim_reduced: int = 256,
    mask_roi_size: int = 14,
    mask_roi_sampling_ratio: int = 2,
    mask_threshold: float | None = None,
    mask_paste: str = "torchvision",
    **faster_rcnn_settings,
) -> MaskRCNN:
    """Mask R-CNN on ``backbone`` with ``neck`` built for it; ``faster_rcnn_settings`` are
    ``faster_rcnn``'s (anchors, RPN, box head, ...). Mask branch: ``mask_layers`` 3x3 convs
    (``mask_head_norm`` ``"none"``: with bias, torchvision v1; ``"bn"``: BatchNorm, v2) on a
    ``mask_roi_size`` RoIAlign of the box pooler's levels (its alignment), a 2x deconvolution
    to ``mask_dim_reduced`` channels and a 1x1 conv to the masks of every class."""
    base = faster_rcnn(num_classes, backbone, neck, **faster_rcnn_settings)
    box_pool = base.roi_heads.box_roi_pool
    mask_pool = MultiScaleRoIAlign(box_pool.featmap_names, mask_roi_size, mask_roi_sampling_ratio,
                                   aligned=box_pool.aligned)  # fmt: skip
    head = MaskHead(base.neck.out_channels, mask_layers, mask_dilation, mask_head_norm)
    predictor = MaskPredictor(head.out_channels, mask_dim_reduced, num_classes)
    roi_heads = MaskRoIHeads(base.roi_heads, mask_pool, head, predictor)
    return MaskRCNN(base.backbone, base.neck, base.rpn, roi_heads, base.transform, mask_threshold,
                    mask_paste)  # fmt: skip


MASK_RCNN = DetectorFamily(
    name="mask_rcnn",
    detector=MaskRCNN,
    presets=(
        "mask_rcnn",
        "mask_rcnn_r18_fpn",
        "mask_rcnn_r50_fpn",
        "mask_rcnn_r50_fpn_v2",
        "mask_rcnn_r50_fpn_mmdet",
    ),  # fmt: skip
    head_groups=FASTER_RCNN.head_groups,
    lora_pattern=rf"{FASTER_RCNN.lora_pattern}|roi_heads\.mask_head",
    lora_train_modules=(*FASTER_RCNN.lora_train_modules, r"roi_heads\.mask_predictor"),
    class_specific=(*FASTER_RCNN.class_specific, "roi_heads.mask_predictor.mask_fcn_logits."),
    converters=(
        Converter(
            "torchvision",
            "torchvision",
            "a torchvision maskrcnn_resnet50_fpn(_v2) state dict (backbone.body.*, "
            "roi_heads.mask_head.*)",
            is_torchvision_mask_rcnn,
            mask_rcnn_from_torchvision,
        ),
        Converter(
            "mmdet",
            "MMDetection",
            "an MMDetection Mask R-CNN R50-FPN checkpoint (rpn_head.*, roi_head.mask_head.*)",
            is_mmdet_mask_rcnn,
            mask_rcnn_from_mmdet,
            mmdet_mask_settings_mismatch,
        ),
    ),
    bench_components={**FASTER_RCNN.bench_components, **MASK_BENCH_COMPONENTS},
)
