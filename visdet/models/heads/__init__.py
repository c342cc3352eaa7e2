from visdet.models.heads.multiscale_roi_align import MultiScaleRoIAlign, map_levels
from visdet.models.heads.roi_heads import ConvFCHead, FastRCNNPredictor, RoIHeads, TwoMLPHead
from visdet.models.heads.rpn import RPN, RPNHead

__all__ = [
    "RPN",
    "ConvFCHead",
    "FastRCNNPredictor",
    "MultiScaleRoIAlign",
    "RPNHead",
    "RoIHeads",
    "TwoMLPHead",
    "map_levels",
]
