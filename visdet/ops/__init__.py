"""Pure tensor functions for detection: boxes, NMS, RoIAlign, anchors, box coding, matching,
dense post-processing, resizing, mask pasting and the detection losses.

Depends on torch only. Names, arguments and results mirror torchvision.ops.
"""

from visdet.ops.anchors import AnchorGenerator, cell_anchors
from visdet.ops.box_coder import BBOX_XFORM_CLIP, BoxCoder, BoxLinearCoder
from visdet.ops.boxes import (
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou,
    remove_small_boxes,
)
from visdet.ops.dense_postprocess import postprocess_detections
from visdet.ops.losses import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)
from visdet.ops.matcher import Matcher
from visdet.ops.nms import batched_nms, nms
from visdet.ops.paste_masks import masks_at_size, paste_masks_grid_sample, paste_masks_in_image
from visdet.ops.resize import resize_image, resize_masks, resized_size
from visdet.ops.roi_align import roi_align
from visdet.ops.sampler import BalancedPositiveNegativeSampler

__all__ = [
    "BBOX_XFORM_CLIP",
    "AnchorGenerator",
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "BoxLinearCoder",
    "Matcher",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "cell_anchors",
    "clip_boxes_to_image",
    "complete_box_iou_loss",
    "distance_box_iou_loss",
    "generalized_box_iou",
    "generalized_box_iou_loss",
    "masks_at_size",
    "nms",
    "paste_masks_grid_sample",
    "paste_masks_in_image",
    "postprocess_detections",
    "remove_small_boxes",
    "resize_image",
    "resize_masks",
    "sigmoid_focal_loss",
    "resized_size",
    "roi_align",
]
