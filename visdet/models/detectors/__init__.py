from visdet.models.detectors.atss import ATSS, ATSS_FAMILY, atss
from visdet.models.detectors.faster_rcnn import (
    FASTER_RCNN,
    FasterRCNN,
    faster_rcnn,
    faster_rcnn_resnet_fpn,
)
from visdet.models.detectors.fcos import FCOS, FCOS_FAMILY, fcos
from visdet.models.detectors.mask_rcnn import MASK_RCNN, MaskRCNN, mask_rcnn
from visdet.models.detectors.retinanet import RETINANET, RetinaNet, retinanet
from visdet.models.detectors.transform import DetectionTransform

# the builder functions shadow their module names here, so that conf/model's
# ``_target_: visdet.models.detectors.<family>`` names the function
__all__ = [
    "ATSS",
    "ATSS_FAMILY",
    "FASTER_RCNN",
    "FCOS",
    "FCOS_FAMILY",
    "MASK_RCNN",
    "RETINANET",
    "DetectionTransform",
    "FasterRCNN",
    "MaskRCNN",
    "RetinaNet",
    "atss",
    "faster_rcnn",
    "fcos",
    "faster_rcnn_resnet_fpn",
    "mask_rcnn",
    "retinanet",
]
