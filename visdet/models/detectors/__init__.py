from visdet.models.detectors.faster_rcnn import (
    FASTER_RCNN,
    FasterRCNN,
    faster_rcnn,
    faster_rcnn_resnet_fpn,
)
from visdet.models.detectors.transform import DetectionTransform

__all__ = [
    "FASTER_RCNN",
    "DetectionTransform",
    "FasterRCNN",
    "faster_rcnn",
    "faster_rcnn_resnet_fpn",
]
