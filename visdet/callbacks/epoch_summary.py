"""Print one line of metrics per epoch (rank zero)."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class EpochSummary(L.Callback):
    """After each training epoch (validation included), print the epoch's key metrics.

    Args:
        keys: metric names to print when present.
    """

    def __init__(
        self, keys: tuple[str, ...] = ("train/loss", "val/mAP", "val/mAP50", "val/mAP75")
    ) -> None:
        self.keys = tuple(keys)
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        parts = [f"{k}={float(metrics[k]):.4f}" for k in self.keys if k in metrics]
        rank_zero_info(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: "
            + " ".join(parts)
            + f" ({time.perf_counter() - self._start:.0f}s)"
        )
