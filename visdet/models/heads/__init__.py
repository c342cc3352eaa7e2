from visdet.models.heads.multiscale_roi_align import MultiScaleRoIAlign, map_levels
from visdet.models.heads.roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from visdet.models.heads.rpn import RPN, RPNHead

__all__ = [
    "RPN",
    "FastRCNNPredictor",
    "MultiScaleRoIAlign",
    "RPNHead",
    "RoIHeads",
    "TwoMLPHead",
    "map_levels",
]
