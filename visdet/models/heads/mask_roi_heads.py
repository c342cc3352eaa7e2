"""Mask R-CNN's RoI heads: Faster R-CNN's box head plus the mask branch
(``visdet.models.heads.mask_head``), with torchvision's semantics (``RoIHeads`` with masks).

Training: the box head's sampled proposals and losses, then the mask branch on the positive
proposals (label > 0) against their matched boxes' masks (``loss_mask``). Eval: the box head's
detections, then the mask branch on the detected boxes; each detection gets the sigmoid of its
class channel, ``masks`` [D, 1, M, M] in its box's frame (pasted into the image by the
detector).
"""

from __future__ import annotations

import torch
from torch import Tensor

from visdet.models.heads.mask_head import (
    MaskHead,
    MaskPredictor,
    class_mask_probabilities,
    mask_loss,
    mask_targets,
)
from visdet.models.heads.multiscale_roi_align import MultiScaleRoIAlign
from visdet.models.heads.roi_heads import RoIHeads
from visdet.models.image_batch import ImageBatch
from visdet.ops.precision import autocast_off, float32


class MaskRoIHeads(RoIHeads):
    """``box_heads``' pooler, box head, predictor and settings, plus ``mask_roi_pool``
    (14 x 14), ``mask_head`` and ``mask_predictor``."""

    def __init__(self, box_heads: RoIHeads, mask_roi_pool: MultiScaleRoIAlign,
                 mask_head: MaskHead, mask_predictor: MaskPredictor) -> None:  # fmt: skip
        super().__init__(box_heads.box_roi_pool, box_heads.box_head, box_heads.box_predictor,
                         **box_heads.settings)  # fmt: skip
        if mask_predictor.num_classes != self.num_classes:
            raise ValueError(
                f"the mask predictor has {mask_predictor.num_classes} classes, the box "
                f"predictor {self.num_classes}"
            )
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor

    def mask_logits(self, features: dict[str, Tensor], boxes: list[Tensor],
                    images: ImageBatch) -> Tensor:  # fmt: skip
        """Per-class mask logits [sum R_i, K + 1, M, M] of per-image boxes [R_i, 4]."""
        pooled = self.mask_roi_pool(features, boxes, images.padded_size)
        return float32(self.mask_predictor(self.mask_head(pooled)))

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        images: ImageBatch,
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            detections, _ = super().forward(features, proposals, images)
            boxes = [d["boxes"] for d in detections]
            logits = self.mask_logits(features, boxes, images)
            labels = torch.cat([d["labels"] for d in detections])
            with autocast_off():
                probs = class_mask_probabilities(logits, labels)
            start = 0  # slices, not split(): torch.export cannot guard split's data-dependent sizes
            for d, b in zip(detections, boxes, strict=True):
                d["masks"] = probs[start : start + b.shape[0]]
                start = start + b.shape[0]
            return detections, {}
        if targets is None or not all("masks" in t for t in targets):
            raise ValueError("Mask R-CNN needs targets with masks ([N, H, W]) in training mode")
        proposals, labels, reg_targets, matched = self.sample_proposals(proposals, targets)
        pooled = self.box_roi_pool(features, proposals, images.padded_size)
        logits, deltas = float32(self.box_predictor(self.box_head(pooled)))
        with autocast_off():
            losses = self.losses(logits, deltas, torch.cat(labels), torch.cat(reg_targets))
        positive = [torch.where(lb > 0)[0] for lb in labels]
        boxes = [p[i] for p, i in zip(proposals, positive, strict=True)]
        if sum(len(b) for b in boxes) == 0:
            # no positive RoI: a zero loss that still reaches every mask parameter (DDP)
            dummy = self.mask_logits(features, [proposals[0][:1]], images)
            losses["loss_mask"] = dummy.sum() * 0
            return [], losses
        mask_logits = self.mask_logits(features, boxes, images)
        size = mask_logits.shape[-1]
        mask_gt = [
            mask_targets(t["masks"], b, m[i], size) if len(b) else b.new_zeros(0, size, size)
            for t, b, m, i in zip(targets, boxes, matched, positive, strict=True)
        ]
        pos_labels = torch.cat([lb[i] for lb, i in zip(labels, positive, strict=True)])
        with autocast_off():
            losses["loss_mask"] = mask_loss(mask_logits, pos_labels, torch.cat(mask_gt))
        return [], losses
