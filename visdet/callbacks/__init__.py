"""Lightning callbacks."""

from visdet.callbacks.augmentation_preview import AugmentationPreview
from visdet.callbacks.batch_size_finder import BatchSizeFinder
from visdet.callbacks.benchmark import BenchmarkCallback
from visdet.callbacks.epoch_summary import EpochSummary
from visdet.callbacks.freeze_unfreeze import FreezeUnfreeze
from visdet.callbacks.lr_finder import LRFinder
from visdet.callbacks.model_ema import ModelEMA
from visdet.callbacks.progressive_resize import ProgressiveResize

__all__ = [
    "AugmentationPreview",
    "BatchSizeFinder",
    "BenchmarkCallback",
    "EpochSummary",
    "FreezeUnfreeze",
    "LRFinder",
    "ModelEMA",
    "ProgressiveResize",
]
