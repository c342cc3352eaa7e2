"""Delta box coding (R-CNN): boxes as offsets (dx, dy, dw, dh) of reference boxes."""

from __future__ import annotations

import math

import torch
from torch import Tensor

BBOX_XFORM_CLIP = math.log(1000.0 / 16)


class BoxCoder:
    """Encode boxes relative to reference boxes and decode them back.

    ``dx = wx * (cx - cx_ref) / w_ref``, ``dw = ww * log(w / w_ref)`` (likewise y, h).
    Decoding clamps dw, dh at ``bbox_xform_clip`` (log(1000/16)) before the exponential.

    Args:
        weights: (wx, wy, ww, wh); (1, 1, 1, 1) for the RPN, (10, 10, 5, 5) for the RoI head.
        bbox_xform_clip: upper clamp of dw, dh when decoding.
    """

    def __init__(
        self,
        weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        bbox_xform_clip: float = BBOX_XFORM_CLIP,
    ) -> None:
        if len(weights) != 4:
            raise ValueError(f"weights must be (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, boxes: Tensor, references: Tensor) -> Tensor:
        """boxes [N, 4] xyxy relative to references [N, 4] xyxy -> deltas [N, 4]."""
        if boxes.shape != references.shape or boxes.shape[-1] != 4:
            raise ValueError(
                f"boxes and references must both be [N, 4], got {list(boxes.shape)} and "
                f"{list(references.shape)}"
            )
        wx, wy, ww, wh = self.weights
        rw = references[:, 2] - references[:, 0]
        rh = references[:, 3] - references[:, 1]
        rx = references[:, 0] + 0.5 * rw
        ry = references[:, 1] + 0.5 * rh
        bw = boxes[:, 2] - boxes[:, 0]
        bh = boxes[:, 3] - boxes[:, 1]
        bx = boxes[:, 0] + 0.5 * bw
        by = boxes[:, 1] + 0.5 * bh
        return torch.stack(
            (
                wx * (bx - rx) / rw,
                wy * (by - ry) / rh,
                ww * torch.log(bw / rw),
                wh * torch.log(bh / rh),
            ),
            dim=1,
        )

    def decode(self, deltas: Tensor, references: Tensor) -> Tensor:
        """deltas [N, 4 * C] relative to references [N, 4] -> boxes [N, 4 * C] xyxy."""
        if (
            deltas.dim() != 2
            or deltas.shape[1] % 4 != 0
            or references.shape != (deltas.shape[0], 4)
        ):
            raise ValueError(
                f"deltas must be [N, 4*C] and references [N, 4], got {list(deltas.shape)} and "
                f"{list(references.shape)}"
            )
        references = references.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        rw = (references[:, 2] - references[:, 0])[:, None]
        rh = (references[:, 3] - references[:, 1])[:, None]
        rx = references[:, 0, None] + 0.5 * rw
        ry = references[:, 1, None] + 0.5 * rh
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.bbox_xform_clip)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.bbox_xform_clip)
        cx = dx * rw + rx
        cy = dy * rh + ry
        half_w = 0.5 * torch.exp(dw) * rw
        half_h = 0.5 * torch.exp(dh) * rh
        out = torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=2)
        return out.reshape(deltas.shape[0], deltas.shape[1])  # also for no boxes


class BoxLinearCoder:
    """Boxes as distances from a reference box's centre to their four sides (FCOS).

    ``(l, t, r, b) = (cx - x1, cy - y1, x2 - cx, y2 - cy)`` of the reference's centre
    (cx, cy), divided by the reference's (w, h, w, h) with ``normalize_by_size``. Argument
    order as torchvision's ``BoxLinearCoder``: ``encode(reference_boxes, proposals)`` encodes
    ``proposals`` (the target boxes) relative to ``reference_boxes`` (the anchors), and
    ``decode(rel_codes, boxes)`` decodes relative to ``boxes`` (the anchors). Shapes [..., 4].
    """

    def __init__(self, normalize_by_size: bool = True) -> None:
        self.normalize_by_size = normalize_by_size

    @staticmethod
    def _centres_and_sizes(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cx = 0.5 * (boxes[..., 0] + boxes[..., 2])
        cy = 0.5 * (boxes[..., 1] + boxes[..., 3])
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        return cx, cy, torch.stack((w, h, w, h), dim=-1)

    def encode(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """proposals [..., 4] xyxy relative to reference_boxes [..., 4] -> distances [..., 4]."""
        cx, cy, size = self._centres_and_sizes(reference_boxes)
        targets = torch.stack(
            (cx - proposals[..., 0], cy - proposals[..., 1],
             proposals[..., 2] - cx, proposals[..., 3] - cy), dim=-1,
        )  # fmt: skip
        return targets / size if self.normalize_by_size else targets

    def decode(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """distances [..., 4] relative to boxes [..., 4] -> boxes [..., 4] xyxy."""
        boxes = boxes.to(rel_codes.dtype)
        cx, cy, size = self._centres_and_sizes(boxes)
        if self.normalize_by_size:
            rel_codes = rel_codes * size
        return torch.stack(
            (cx - rel_codes[..., 0], cy - rel_codes[..., 1],
             cx + rel_codes[..., 2], cy + rel_codes[..., 3]), dim=-1,
        )  # fmt: skip
