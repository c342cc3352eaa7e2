"""Fast R-CNN RoI head: pooled features -> two FC layers -> class scores and box deltas."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visdet.models.heads.multiscale_roi_align import MultiScaleRoIAlign
from visdet.models.image_batch import ImageBatch
from visdet.ops import (
    BalancedPositiveNegativeSampler,
    BoxCoder,
    Matcher,
    box_iou,
    postprocess_detections,
)
from visdet.ops.precision import autocast_off, float32


class TwoMLPHead(nn.Module):
    """Flatten, then fc6 and fc7, each followed by ReLU."""

    def __init__(self, in_channels: int = 256 * 7 * 7, representation_size: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.out_channels = representation_size

    def forward(self, x: Tensor) -> Tensor:
        """x: [K, C, h, w] -> [K, representation_size]."""
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class ConvFCHead(nn.Module):
    """3x3 convs (each conv + BatchNorm2d + ReLU, or conv with bias + ReLU), then flatten and
    FC layers each followed by ReLU: torchvision's ``FastRCNNConvFCHead`` (Faster R-CNN v2:
    4 convs with BatchNorm, one FC of 1024).

    Keys: ``convs.i.0`` conv, ``convs.i.1`` BatchNorm2d (``norm="bn"``), ``fcs.j`` Linear.

    Args:
        in_channels: channels of the pooled features.
        roi_size: (h, w) of the pooled features, or an int.
        conv_channels: output channels of each conv layer.
        fc_channels: output size of each FC layer (the last is the representation size).
        norm: "bn" (bias-free conv + BatchNorm2d) or "none" (conv with bias).
    """

    def __init__(
        self,
        in_channels: int = 256,
        roi_size: int | tuple[int, int] = 7,
        conv_channels: tuple[int, ...] = (256, 256, 256, 256),
        fc_channels: tuple[int, ...] = (1024,),
        norm: str = "bn",
    ) -> None:
        super().__init__()
        if norm not in ("bn", "none"):
            raise ValueError(f"norm must be 'bn' or 'none', got {norm!r}")
        if not fc_channels:
            raise ValueError("fc_channels needs at least one FC layer")
        h, w = (roi_size, roi_size) if isinstance(roi_size, int) else roi_size
        self.convs = nn.ModuleList()
        for out in conv_channels:
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, out, 3, padding=1, bias=norm == "none")
            ]
            if norm == "bn":
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            self.convs.append(nn.Sequential(*layers))
            in_channels = out
        sizes = [in_channels * h * w, *fc_channels]
        self.fcs = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.out_channels = fc_channels[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: [K, C, h, w] -> [K, fc_channels[-1]]."""
        for conv in self.convs:
            x = conv(x)
        x = x.flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return x


class FastRCNNPredictor(nn.Module):
    """Class logits over ``num_classes + 1`` (index 0 = background) and class-specific deltas.

    Args:
        in_channels: feature size from the box head.
        num_classes: number of object classes, background excluded.
    """

    def __init__(self, in_channels: int = 1024, num_classes: int = 80) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (background excluded), got {num_classes}")
        self.num_classes = num_classes
        self.cls_score = nn.Linear(in_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(in_channels, (num_classes + 1) * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: [K, D] -> logits [K, num_classes + 1], deltas [K, 4 * (num_classes + 1)]."""
        return self.cls_score(x), self.bbox_pred(x)


class RoIHeads(nn.Module):
    """Sample proposals, pool them, classify and refine; losses in training, detections in eval.

    Args:
        box_roi_pool: the multi-scale RoIAlign (default: P2-P5, 7x7, sampling 2).
        box_head: pooled features -> vectors (default: TwoMLPHead, 1024).
        box_predictor: vectors -> class logits and deltas (default: 80 classes).
        fg_iou_thresh / bg_iou_thresh: proposal IoU for foreground / below which background.
        batch_size_per_image, positive_fraction: proposals sampled per image for the loss.
        bbox_reg_weights: box coder weights (10, 10, 5, 5).
        score_thresh: minimum class probability of a detection.
        nms_thresh: per-class NMS IoU threshold.
        detections_per_img: detections kept per image (highest scores).
        min_size: minimum detection side in pixels.
        class_weights: None (plain cross-entropy) or one weight per object class, labels
            1..num_classes in order; the background keeps weight 1 (see ``losses``). Held as
            a non-persistent buffer, so checkpoints do not change.
    """

    def __init__(
        self,
        box_roi_pool: MultiScaleRoIAlign | None = None,
        box_head: nn.Module | None = None,
        box_predictor: FastRCNNPredictor | None = None,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        min_size: float = 1e-2,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        # the settings, for heads built on these (Mask R-CNN's MaskRoIHeads)
        self.settings = {
            "fg_iou_thresh": fg_iou_thresh, "bg_iou_thresh": bg_iou_thresh,
            "batch_size_per_image": batch_size_per_image, "positive_fraction": positive_fraction,
            "bbox_reg_weights": tuple(bbox_reg_weights), "score_thresh": score_thresh,
            "nms_thresh": nms_thresh, "detections_per_img": detections_per_img,
            "min_size": min_size, "class_weights": class_weights,
        }  # fmt: skip
        self.box_roi_pool = box_roi_pool if box_roi_pool is not None else MultiScaleRoIAlign()
        self.box_head = box_head if box_head is not None else TwoMLPHead()
        self.box_predictor = box_predictor if box_predictor is not None else FastRCNNPredictor()
        self.num_classes = self.box_predictor.num_classes
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(tuple(bbox_reg_weights))
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.min_size = min_size
        self.register_buffer(
            "class_weights", _class_weight_vector(class_weights, self.num_classes), persistent=False
        )

    def sample_proposals(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Add the gt boxes to the proposals, label them and sample a training batch.

        Returns per image: sampled proposals [S, 4], labels [S] (0 = background), regression
        targets [S, 4] and the index of each proposal's matched gt box [S] (0 where it has
        none)."""
        out_props, out_labels, out_targets, out_matched = [], [], [], []
        for props, tgt in zip(proposals, targets, strict=True):
            gt_boxes, gt_labels = tgt["boxes"].to(props.dtype), tgt["labels"]
            props = torch.cat([props, gt_boxes])
            if gt_boxes.numel() == 0:
                labels = torch.zeros(props.shape[0], dtype=torch.int64, device=props.device)
                matched = torch.zeros_like(props)
                idx = torch.zeros_like(labels)
            else:
                idx = self.matcher(box_iou(gt_boxes, props))
                labels = gt_labels[idx.clamp(min=0)].clone()
                labels[idx == Matcher.BELOW_LOW_THRESHOLD] = 0
                labels[idx == Matcher.BETWEEN_THRESHOLDS] = -1
                matched = gt_boxes[idx.clamp(min=0)]
            pos, neg = self.sampler([labels])
            keep = torch.nonzero(pos[0] | neg[0]).squeeze(1)
            out_props.append(props[keep])
            out_labels.append(labels[keep])
            targets_k = torch.zeros_like(props[keep])
            fg = labels[keep] > 0
            if fg.any():
                targets_k[fg] = self.box_coder.encode(matched[keep][fg], props[keep][fg])
            out_targets.append(targets_k)
            out_matched.append(idx.clamp(min=0)[keep])
        return out_props, out_labels, out_targets, out_matched

    def losses(
        self, logits: Tensor, deltas: Tensor, labels: Tensor, targets: Tensor
    ) -> dict[str, Tensor]:
        """Cross-entropy over sampled RoIs; smooth-L1 (beta 1/9) on the gt-class deltas of
        foreground RoIs, summed and divided by the number of sampled RoIs.

        logits: [S, K + 1], deltas: [S, 4 (K + 1)], labels: [S] in 0..K, targets: [S, 4].
        With ``class_weights`` w (w[0] = 1 for the background), the classification loss is
        ``sum_i w[labels_i] * CE_i / S``: each RoI's cross-entropy scaled by its label's
        weight, divided by the number of sampled RoIs (as MMDetection does), not the weighted
        mean ``F.cross_entropy(weight=w)`` computes (which divides by ``sum_i w[labels_i]``
        and so would rescale every RoI's term with the batch's label mix)."""
        if self.class_weights is None:
            loss_cls = F.cross_entropy(logits, labels)
        else:
            per_roi = F.cross_entropy(logits, labels, reduction="none")
            loss_cls = (per_roi * self.class_weights[labels]).sum() / max(1, labels.numel())
        fg = torch.nonzero(labels > 0).squeeze(1)
        deltas = deltas.view(deltas.shape[0], -1, 4)[fg, labels[fg]]
        loss_box = F.smooth_l1_loss(deltas, targets[fg], beta=1 / 9, reduction="sum")
        return {"loss_cls": loss_cls, "loss_box": loss_box / max(1, labels.numel())}

    def postprocess(
        self,
        logits: Tensor,
        deltas: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Per image: decode class-specific boxes, drop background and low scores, per-class
        NMS, keep the top ``detections_per_img``."""
        counts = [p.shape[0] for p in proposals]
        boxes = self.box_coder.decode(deltas, torch.cat(proposals)).view(sum(counts), -1, 4)
        scores = F.softmax(logits, -1)
        results = []
        for bx, sc, size in zip(
            boxes.split(counts), scores.split(counts), image_sizes, strict=True
        ):
            # one candidate per (RoI, object class); the background column is dropped
            labels = torch.arange(1, sc.shape[1], device=sc.device).repeat(sc.shape[0])
            results.append(
                postprocess_detections(
                    bx[:, 1:].reshape(-1, 4),
                    sc[:, 1:].reshape(-1),
                    labels,
                    size,
                    self.score_thresh,
                    self.nms_thresh,
                    self.detections_per_img,
                    self.min_size,
                )
            )
        return results

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        images: ImageBatch,
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Training: (empty list, losses). Eval: (per-image detections in the pixels of the
        resized images inside ``images``, empty dict)."""
        if self.training:
            if targets is None:
                raise ValueError("RoIHeads needs targets in training mode")
            proposals, labels, reg_targets, _ = self.sample_proposals(proposals, targets)
        pooled = self.box_roi_pool(features, proposals, images.padded_size)
        logits, deltas = float32(self.box_predictor(self.box_head(pooled)))
        with autocast_off():
            if self.training:
                return [], self.losses(logits, deltas, torch.cat(labels), torch.cat(reg_targets))
            return self.postprocess(logits, deltas, proposals, images.image_sizes), {}


def _class_weight_vector(class_weights: Sequence[float] | None, num_classes: int) -> Tensor | None:
    """[num_classes + 1] weights, background (index 0) first at 1; None stays None."""
    if class_weights is None:
        return None
    if isinstance(class_weights, str) or not isinstance(class_weights, Sequence):
        raise ValueError(
            f"model.detector.class_weights must be null or a list of {num_classes} floats, got "
            f"{class_weights!r} ('inverse_frequency' / 'inverse_sqrt_frequency' are resolved "
            "from the training data by visdet train)"
        )
    if len(class_weights) != num_classes:
        raise ValueError(
            f"model.detector.class_weights has {len(class_weights)} values but there are "
            f"{num_classes} classes (one weight per class, labels 1..{num_classes})"
        )
    values = [float(w) for w in class_weights]
    if not all(math.isfinite(w) and w >= 0 for w in values):
        raise ValueError(
            f"model.detector.class_weights must be finite and >= 0, got {list(class_weights)}"
        )
    return torch.tensor([1.0, *values], dtype=torch.float32)
