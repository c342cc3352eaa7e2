"""Test-only callbacks that inject faults into a ``train.py`` subprocess (importable there
through PYTHONPATH=tests)."""

import os
import signal

import lightning as L


class KillAtEpoch(L.Callback):
    """SIGKILL the process when epoch ``epoch`` starts: a run killed from outside, with no
    chance to clean up or save anything."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)
