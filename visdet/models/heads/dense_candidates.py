"""Detections of a dense (one-stage) head, with torchvision's RetinaNet semantics
(``RetinaNet.postprocess_detections``, ``FCOS.postprocess_detections``): per pyramid level,
the class scores (RetinaNet: sigmoid of the logits; FCOS: the geometric mean with the
centerness' sigmoid) above ``score_thresh``, the best ``topk`` of them (anchor and class of
each), their boxes decoded from the anchors. With score ``factors`` per anchor (MMDetection's
``score_factors``: ATSS's and its FCOS' centerness sigmoid) the threshold and the top-k apply to
the class scores and the kept scores are multiplied by the factor afterwards, with no
threshold after that (MMDetection's ``_predict_by_feat_single``). Then, over all levels, the
shared dense post-processing
(``visdet.ops.postprocess_detections``: clip, per-class NMS, the best ``max_detections``).
No small boxes are dropped (``min_size`` 0), as torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from visdet.ops import BoxCoder, BoxLinearCoder, clip_boxes_to_image, postprocess_detections


def level_candidates(
    scores: Tensor, deltas: Tensor, anchors: Tensor, coder: BoxCoder | BoxLinearCoder,
    image_size: tuple[int, int], score_thresh: float, topk: int, factors: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """One level of one image: class scores [A, K] in [0, 1], deltas [A, 4], anchors [A, 4],
    optional score factors [A] -> the top candidates' (boxes [T, 4] decoded by ``coder`` and
    clipped, scores [T], labels [T] in 1..K)."""
    num_classes = scores.shape[-1]
    scores = scores.flatten()
    passed = torch.where(scores > score_thresh)[0]
    scores, order = scores[passed].topk(min(topk, passed.numel()))
    idxs = passed[order]
    anchor_idxs = torch.div(idxs, num_classes, rounding_mode="floor")
    labels = idxs % num_classes + 1
    if factors is not None:
        scores = scores * factors[anchor_idxs]
    boxes = coder.decode(deltas[anchor_idxs], anchors[anchor_idxs])
    return clip_boxes_to_image(boxes, image_size), scores, labels


def dense_detections(
    scores: Sequence[Tensor], deltas: Sequence[Tensor], anchors: Sequence[Tensor],
    image_size: tuple[int, int], coder: BoxCoder | BoxLinearCoder, score_thresh: float = 0.05,
    topk: int = 1000, nms_thresh: float = 0.5, max_detections: int = 300,
    factors: Sequence[Tensor] | None = None,
) -> dict[str, Tensor]:  # fmt: skip
    """One image: per-level class scores [A_l, K], deltas [A_l, 4], anchors [A_l, 4] and
    optional score factors [A_l] -> ``{"boxes", "scores", "labels"}`` by decreasing score."""
    per_level = [None] * len(scores) if factors is None else factors
    parts = [
        level_candidates(sc, dl, a, coder, image_size, score_thresh, topk, f)
        for sc, dl, a, f in zip(scores, deltas, anchors, per_level, strict=True)
    ]
    boxes, scores, labels = (torch.cat(p) for p in zip(*parts, strict=True))
    final_thresh = score_thresh if factors is None else float("-inf")
    return postprocess_detections(
        boxes, scores, labels, image_size, final_thresh, nms_thresh, max_detections, min_size=0.0
    )
