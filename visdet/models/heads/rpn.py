"""Region Proposal Network (Ren et al. 2015): head, anchor targets, losses and proposals."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visdet.models.image_batch import ImageBatch
from visdet.ops import (
    AnchorGenerator,
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    box_iou,
    postprocess_detections,
)
from visdet.ops.precision import autocast_off, float32


class RPNHead(nn.Module):
    """Shared 3x3 conv + ReLU, then 1x1 convs for objectness (A) and box deltas (4A)."""

    def __init__(self, in_channels: int = 256, num_anchors: int = 3, num_convs: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_convs):
            layers += [nn.Conv2d(in_channels, in_channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.conv = nn.Sequential(*layers)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: objectness [B, A, H, W] and deltas [B, 4A, H, W]."""
        logits, deltas = [], []
        for x in features:
            t = self.conv(x)
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def flatten_predictions(
    logits: Sequence[Tensor], deltas: Sequence[Tensor]
) -> tuple[Tensor, Tensor]:
    """Per-level [B, A, H, W] / [B, 4A, H, W] -> [B, sum(HWA)] and [B, sum(HWA), 4], in the
    anchor order of AnchorGenerator (location-major, anchors of a location together)."""
    flat_logits, flat_deltas = [], []
    for lg, dl in zip(logits, deltas, strict=True):
        b, a, h, w = lg.shape
        flat_logits.append(lg.permute(0, 2, 3, 1).reshape(b, -1))
        flat_deltas.append(dl.view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4))
    return torch.cat(flat_logits, 1), torch.cat(flat_deltas, 1)


class RPN(nn.Module):
    """Proposals from anchors, with training losses.

    Args:
        head: the RPNHead (its anchors per location must match the anchor generator);
            default: 256 input channels, one conv.
        anchor_generator: anchors per level; default: FPN sizes 32..512, ratios 0.5, 1, 2.
        fg_iou_thresh / bg_iou_thresh: anchor IoU above which an anchor is positive / below
            which it is negative (in between: ignored); low-quality matches are kept.
        batch_size_per_image, positive_fraction: anchors sampled per image for the loss.
        pre_nms_top_n_train/test: proposals kept per level before NMS.
        post_nms_top_n_train/test: proposals kept per image after NMS.
        nms_thresh: NMS IoU threshold (per level). score_thresh: minimum objectness
            probability. min_size: minimum proposal side in pixels.
    """

    def __init__(
        self,
        head: RPNHead | None = None,
        anchor_generator: AnchorGenerator | None = None,
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n_train: int = 2000,
        pre_nms_top_n_test: int = 1000,
        post_nms_top_n_train: int = 2000,
        post_nms_top_n_test: int = 1000,
        nms_thresh: float = 0.7,
        score_thresh: float = 0.0,
        min_size: float = 1e-3,
    ) -> None:
        super().__init__()
        anchor_generator = anchor_generator if anchor_generator is not None else AnchorGenerator()
        if head is None:
            head = RPNHead(256, anchor_generator.num_anchors_per_location()[0])
        per_location = set(anchor_generator.num_anchors_per_location())
        if per_location != {head.cls_logits.out_channels}:
            raise ValueError(
                f"the RPN head predicts {head.cls_logits.out_channels} anchors per location but "
                f"the anchor generator makes {sorted(per_location)}"
            )
        self.head = head
        self.anchor_generator = anchor_generator
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n = {"train": pre_nms_top_n_train, "test": pre_nms_top_n_test}
        self.post_nms_top_n = {"train": post_nms_top_n_train, "test": post_nms_top_n_test}
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = min_size

    def _mode(self) -> str:
        return "train" if self.training else "test"

    def assign_targets(
        self, anchors: Tensor, gt_boxes: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: anchor labels (1 fg, 0 bg, -1 ignore) and the matched gt box of each."""
        labels, matched = [], []
        for gt in gt_boxes:
            if gt.numel() == 0:
                labels.append(torch.zeros(anchors.shape[0], device=anchors.device))
                matched.append(torch.zeros_like(anchors))
                continue
            idx = self.matcher(box_iou(gt, anchors))
            lab = (idx >= 0).to(anchors.dtype)
            lab[idx == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(lab)
            matched.append(gt[idx.clamp(min=0)])
        return labels, matched

    def losses(
        self, logits: Tensor, deltas: Tensor, anchors: Tensor, gt_boxes: list[Tensor]
    ) -> dict[str, Tensor]:
        labels, matched = self.assign_targets(anchors, gt_boxes)
        pos, neg = self.sampler(labels)
        sampled = torch.stack(pos) | torch.stack(neg)
        pos_deltas = torch.cat([deltas[i][p] for i, p in enumerate(pos)])
        pos_targets = torch.cat(
            [self.box_coder.encode(m[p], anchors[p]) for m, p in zip(matched, pos, strict=True)]
        )
        num_sampled = max(1, int(sampled.sum()))
        loss_box = (
            F.smooth_l1_loss(pos_deltas, pos_targets, beta=1 / 9, reduction="sum") / num_sampled
        )
        loss_cls = F.binary_cross_entropy_with_logits(logits[sampled], torch.stack(labels)[sampled])
        return {"loss_rpn_cls": loss_cls, "loss_rpn_box": loss_box}

    def select_proposals(
        self,
        boxes: Tensor,
        logits: Tensor,
        level_sizes: list[int],
        image_sizes: list[tuple[int, int]],
    ) -> list[Tensor]:
        """boxes [B, P, 4], logits [B, P] -> per image proposals [<=post_nms_top_n, 4]."""
        pre_n, post_n = self.pre_nms_top_n[self._mode()], self.post_nms_top_n[self._mode()]
        levels = torch.cat(
            [
                torch.full((n,), i, dtype=torch.int64, device=boxes.device)
                for i, n in enumerate(level_sizes)
            ]
        )
        top_idx = []
        start = 0
        for n in level_sizes:
            k = min(pre_n, n)
            top_idx.append(logits[:, start : start + n].topk(k, dim=1).indices + start)
            start += n
        top_idx = torch.cat(top_idx, dim=1)
        out = []
        for b, size in enumerate(image_sizes):
            idx = top_idx[b]
            kept = postprocess_detections(
                boxes[b, idx],
                torch.sigmoid(logits[b, idx]),
                levels[idx],
                size,
                self.score_thresh,
                self.nms_thresh,
                post_n,
                self.min_size,
                keep_equal_to_thresh=True,
            )
            out.append(kept["boxes"])
        return out

    def forward(
        self,
        features: Sequence[Tensor],
        images: ImageBatch,
        gt_boxes: list[Tensor] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """features: per level [B, C, H, W] of the padded batch ``images``; gt_boxes: per
        image [G, 4] (required in training). Returns per-image proposals [P, 4] (detached)
        and losses."""
        # mixed precision: the head's convs may run in half precision, the rest in float32
        logits, deltas = float32(self.head(features))
        with autocast_off():
            return self._proposals_and_losses(logits, deltas, features, images, gt_boxes)

    def _proposals_and_losses(self, logits, deltas, features, images, gt_boxes):
        feature_sizes = [tuple(f.shape[-2:]) for f in features]
        anchors_per_level = self.anchor_generator(
            images.padded_size, feature_sizes, dtype=logits[0].dtype, device=logits[0].device
        )
        anchors = torch.cat(anchors_per_level)
        logits, deltas = flatten_predictions(logits, deltas)
        b = logits.shape[0]
        boxes = self.box_coder.decode(deltas.detach().reshape(-1, 4), anchors.repeat(b, 1)).view(
            b, -1, 4
        )
        proposals = self.select_proposals(
            boxes, logits.detach(), [a.shape[0] for a in anchors_per_level], images.image_sizes
        )
        losses: dict[str, Tensor] = {}
        if self.training:
            if gt_boxes is None:
                raise ValueError("the RPN needs gt_boxes in training mode")
            losses = self.losses(logits, deltas, anchors, gt_boxes)
        return proposals, losses
