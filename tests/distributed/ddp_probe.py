"""A test-only callback that records, per process, what each training and validation step
saw (image ids, image sizes) and can make one process fail, for the DDP tests."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L


class DDPProbe(L.Callback):
    def __init__(self, out_dir: str, fail_rank: int = -1, fail_step: int = -1) -> None:
        self.out_dir = Path(out_dir)
        self.fail_rank, self.fail_step = fail_rank, fail_step
        self.records: list[dict] = []

    def _record(self, trainer, stage: str, batch) -> None:
        images, targets = batch
        self.records.append(
            {
                "stage": stage,
                "epoch": trainer.current_epoch,
                "step": trainer.global_step,
                "ids": [int(t["image_id"]) for t in targets],
                "sizes": [list(img.shape[-2:]) for img in images],
            }
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_rank == self.fail_rank and trainer.global_step == self.fail_step:
            raise RuntimeError(f"probe: simulated failure of rank {self.fail_rank}")
        self._record(trainer, "train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._record(trainer, "val", batch)

    def on_fit_end(self, trainer, pl_module):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"world_size": trainer.world_size, "records": self.records}))
