"""Mask R-CNN's mask branch (He et al. 2017) in torchvision's layout: the mask head (convs on
the 14 x 14 RoIAlign features), the predictor (a 2x deconvolution, ReLU, a 1x1 conv to one
28 x 28 mask logit map per class, background included), the mask targets and loss, and the
selection of each detection's class mask.

Keys equal torchvision's ``MaskRCNNHeads`` / ``MaskRCNNPredictor``: ``mask_head.{i}.0`` conv
(with bias without norm; v1), ``mask_head.{i}.1`` BatchNorm2d (v2), ``mask_predictor.
conv5_mask``, ``mask_predictor.mask_fcn_logits`` [K + 1, D, 1, 1] (channel 0: background,
never selected).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visdet.ops import roi_align


class MaskHead(nn.Sequential):
    """``len(layers)`` blocks of 3x3 conv (dilation ``dilation``) + [BatchNorm2d] + ReLU.

    Args:
        in_channels: channels of the pooled features.
        layers: output channels of each conv.
        dilation: of every conv (padding = dilation keeps the size).
        norm: ``"none"`` (conv with bias, torchvision v1) or ``"bn"`` (bias-free conv +
            BatchNorm2d, v2).
    """

    def __init__(self, in_channels: int = 256, layers: Sequence[int] = (256, 256, 256, 256),
                 dilation: int = 1, norm: str = "none") -> None:  # fmt: skip
        if norm not in ("none", "bn"):
            raise ValueError(f"mask head norm must be 'none' or 'bn', got {norm!r}")
        if not layers or dilation < 1:
            raise ValueError(
                f"mask head needs at least one layer and dilation >= 1, got {list(layers)}, "
                f"{dilation}"
            )
        blocks = []
        for out in layers:
            block: list[nn.Module] = [
                nn.Conv2d(
                    in_channels, out, 3, padding=dilation, dilation=dilation, bias=norm == "none"
                )  # fmt: skip
            ]
            if norm == "bn":
                block.append(nn.BatchNorm2d(out))
            block.append(nn.ReLU(inplace=True))
            blocks.append(nn.Sequential(*block))
            in_channels = out
        super().__init__(*blocks)
        self.out_channels = in_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


class MaskPredictor(nn.Sequential):
    """[R, C, 14, 14] -> mask logits [R, num_classes + 1, 28, 28]: ``conv5_mask`` (2x2
    deconvolution, stride 2), ReLU, ``mask_fcn_logits`` (1x1 conv)."""

    def __init__(self, in_channels: int = 256, dim_reduced: int = 256,
                 num_classes: int = 80) -> None:  # fmt: skip
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (background excluded), got {num_classes}")
        super().__init__(
            OrderedDict(
                conv5_mask=nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0),
                relu=nn.ReLU(inplace=True),
                mask_fcn_logits=nn.Conv2d(dim_reduced, num_classes + 1, 1),
            )
        )
        self.num_classes = num_classes
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


MASK_TARGET_CHUNK = 16  # ground-truth masks turned to float at a time


def mask_targets(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, size: int) -> Tensor:
    """The ground-truth mask of each RoI's matched box, cropped to the RoI and resized to
    ``size`` x ``size`` by RoIAlign (torchvision's ``project_masks_on_boxes``: spatial scale 1,
    adaptive sampling, not aligned): gt_masks [G, H, W] (0/1), boxes [R, 4], matched_idxs [R]
    -> [R, size, size] in [0, 1].

    Memory: the masks are converted to float ``MASK_TARGET_CHUNK`` at a time (torchvision
    converts all G at once: 4 bytes per pixel of every object, 430 MB for 100 objects at
    800 x 1333); each RoI still reads its own mask, so the targets are the same."""
    out = boxes.new_zeros((boxes.shape[0], size, size))
    for start in range(0, gt_masks.shape[0], MASK_TARGET_CHUNK):
        mine = (matched_idxs >= start) & (matched_idxs < start + MASK_TARGET_CHUNK)
        if not bool(mine.any()):
            continue
        chunk = gt_masks[start : start + MASK_TARGET_CHUNK, None].to(boxes.dtype)
        rois = torch.cat([(matched_idxs[mine] - start)[:, None].to(boxes), boxes[mine]], dim=1)
        out[mine] = roi_align(chunk, rois, (size, size), 1.0)[:, 0]
    return out


def mask_loss(mask_logits: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """Binary cross-entropy of each positive RoI's class channel against its target, mean over
    RoIs and pixels (torchvision's ``maskrcnn_loss``): mask_logits [R, K + 1, M, M], labels
    [R] in 1..K, targets [R, M, M]. No positive RoI: 0, still connected to the graph."""
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    picked = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(picked, targets)


def class_mask_probabilities(mask_logits: Tensor, labels: Tensor) -> Tensor:
    """The sigmoid of each detection's own class channel: [D, K + 1, M, M], labels [D] ->
    [D, 1, M, M] (torchvision's ``maskrcnn_inference`` for one batch of detections)."""
    index = torch.arange(mask_logits.shape[0], device=labels.device)
    return mask_logits[index, labels].sigmoid()[:, None]
