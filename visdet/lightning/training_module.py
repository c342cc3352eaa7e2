"""What every visdet LightningModule shares: the RNG state travels in checkpoints (so a
resumed run continues the same random streams), and a partial optimizer plus an optional
per-step schedule become Lightning's optimizer configuration."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import lightning as L

from visdet.lightning.rng_state import capture_rng_state, restore_rng_state


class TrainingModule(L.LightningModule):
    optimizer_factory: Callable
    scheduler_factory: Callable | None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_states"] = capture_rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if checkpoint.get("rng_states"):
            restore_rng_state(checkpoint["rng_states"])

    def optimizers_for(self, params: Iterable):
        """``optimizer_factory(params)``, stepped per batch by ``scheduler_factory(optimizer,
        total_steps)`` when one is set."""
        optimizer = self.optimizer_factory(params)
        if self.scheduler_factory is None:
            return optimizer
        total = self.trainer.estimated_stepping_batches
        total = int(total) if math.isfinite(total) else total
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
