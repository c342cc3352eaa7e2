"""A test-only callback for the ``train.py`` subprocesses of test_interrupt_resume.py: sends
the process a signal when a given global step starts and records, per step, the learning
rate the step trains with (``<out>/steps-<pid>.json``)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L


class SignalAtStep(L.Callback):
    def __init__(self, out: str, step: int = -1, signal_name: str = "SIGTERM") -> None:
        self.out, self.step, self.signal_name = Path(out), step, signal_name
        self.steps: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.steps.append({"step": trainer.global_step, "batch": batch_idx, "lr": lr})
        self._write()
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.Signals[self.signal_name])

    def _write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"steps-{os.getpid()}.json").write_text(json.dumps(self.steps))
