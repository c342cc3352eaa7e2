from visdet.models.detectors.faster_rcnn import FasterRCNN, faster_rcnn_resnet_fpn
from visdet.models.detectors.transform import DetectionTransform

__all__ = ["DetectionTransform", "FasterRCNN", "faster_rcnn_resnet_fpn"]
