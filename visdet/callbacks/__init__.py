"""Lightning callbacks."""

from visdet.callbacks.epoch_summary import EpochSummary

__all__ = ["EpochSummary"]
