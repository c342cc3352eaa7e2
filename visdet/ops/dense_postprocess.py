"""The one dense post-processing path: from scored boxes of one image to its detections.

Used by the RPN (proposals, grouped by pyramid level) and by every detection head (grouped
by class): clip to the image, drop low scores and small boxes, batched NMS within each
group, keep the best ``max_detections``. The same steps and order as torchvision's RPN and
box heads.
"""

from __future__ import annotations

from torch import Tensor

from visdet.ops.boxes import clip_boxes_to_image, remove_small_boxes
from visdet.ops.nms import batched_nms


def postprocess_detections(
    boxes: Tensor,
    scores: Tensor,
    groups: Tensor,
    image_size: tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    max_detections: int,
    min_size: float = 1e-3,
    keep_equal_to_thresh: bool = False,
) -> dict[str, Tensor]:
    """boxes [N, 4] xyxy, scores [N], groups [N] int64 (class or level) of one image ->
    ``{"boxes": [D, 4], "scores": [D], "labels": [D]}`` (labels = groups), by decreasing score.

    A box is kept when its score is above ``score_thresh`` (``>=`` with
    ``keep_equal_to_thresh``, as torchvision's RPN; its box heads use ``>``), both sides are
    at least ``min_size`` after clipping to ``image_size`` (h, w), and NMS within its group
    (IoU > ``nms_thresh`` suppresses) keeps it; then the first ``max_detections``.
    """
    boxes = clip_boxes_to_image(boxes, image_size)
    passed = scores >= score_thresh if keep_equal_to_thresh else scores > score_thresh
    keep = remove_small_boxes(boxes, min_size)
    keep = keep[passed[keep]]
    boxes, scores, groups = boxes[keep], scores[keep], groups[keep]
    keep = batched_nms(boxes, scores, groups, nms_thresh)[:max_detections]
    return {"boxes": boxes[keep], "scores": scores[keep], "labels": groups[keep]}
