"""Lightning callbacks."""

from visdet.callbacks.epoch_summary import EpochSummary
from visdet.callbacks.freeze_unfreeze import FreezeUnfreeze
from visdet.callbacks.lr_finder import LRFinder

__all__ = ["EpochSummary", "FreezeUnfreeze", "LRFinder"]
