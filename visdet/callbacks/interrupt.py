"""SIGTERM (what clusters send before preemption) and Ctrl+C (SIGINT) stop training at the end
of the current step and write a checkpoint of that step; the run then ends with one line
and a non-zero status (143 for SIGTERM, 130 for SIGINT), and ``ckpt_path=last`` continues
from that step (global step, LR schedule position, optimizer state).

- ``Interrupts`` (a context manager around fit.py's ``trainer.fit`` and test): catches both
  signals. While the trainer trains, the first one asks Lightning to stop after the step
  (Lightning's own SIGTERM flag, which its loops check at step boundaries and answer with
  ``SIGTERMException``); a second Ctrl+C, or a signal outside training (setting up, testing),
  stops at once without writing a checkpoint.
- ``InterruptCheckpoint`` (conf/callbacks: ``interrupt_checkpoint``): on that
  ``SIGTERMException`` writes ``<dirpath>/<filename>.ckpt`` (``checkpoints/last.ckpt``,
  atomically through the trainer's ``AtomicCheckpointIO``), so ``ckpt_path=last`` finds it.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn, TrainerStatus
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, not an Exception
    """The run was stopped by a signal; ``message`` is its one line, ``status`` the exit
    status (128 + signal number). A BaseException: a sweep stops too."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class InterruptCheckpoint(L.Callback):
    """Write a checkpoint of the current step when training stops on SIGTERM or SIGINT."""

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.saved: Path | None = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.state.fn == TrainerFn.FITTING:
            # the full state (optimizer, schedule, loops: Lightning's default); every rank
            # calls it, rank 0 writes
            trainer.save_checkpoint(self.path)
            self.saved = self.path
            log.info("interrupted: saved step %d to %s", trainer.global_step, self.path)


class Interrupts:
    """``with Interrupts() as stop: ...; stop.trainer = trainer``: handles SIGINT and SIGTERM;
    ``stop.signal`` names the first signal received (None if none)."""

    def __init__(self, trainer: L.Trainer | None = None) -> None:
        self.trainer = trainer  # set once built: signals before that stop at once
        self.signal: str | None = None
        self.count = 0
        self._previous: dict = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _training(self) -> bool:
        if self.trainer is None:
            return False
        state = self.trainer.state
        return state.fn == TrainerFn.FITTING and state.status == TrainerStatus.RUNNING

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.count += 1
        self.signal = self.signal or name
        # during fit Lightning's SIGTERM handler runs first and calls this one
        lightning_sigterm = signal.getsignal(signal.SIGTERM) is not self._on_signal
        if self._training() and self.count == 1:
            again = " (Ctrl+C again stops at once, without it)" if name == "SIGINT" else ""
            log.warning(
                "%s: stopping at the end of this training step and saving a checkpoint%s",
                name,
                again,
            )
            self.trainer._signal_connector.received_sigterm = True  # Lightning's stop flag
            return
        if signum == signal.SIGTERM and lightning_sigterm and self._training():
            return  # a repeated SIGTERM: Lightning stops at the end of the step anyway
        raise KeyboardInterrupt(name)

    def message(
        self, saved: Path | None, finished: bool, output_dir: Path, has_callback: bool = True
    ) -> RunInterrupted:
        """The one line (and status) of a run stopped by ``self.signal``."""
        name = self.signal or "SIGINT"
        status = 128 + int(signal.Signals[name])
        if self.trainer is None:
            return RunInterrupted(f"interrupted by {name} before training started", status)
        where = f"epoch {self.trainer.current_epoch}, step {self.trainer.global_step}"
        if finished:
            text = (
                f"interrupted by {name} after training (while testing): the checkpoints in "
                f"{output_dir / 'checkpoints'} are kept; metrics.json was not written"
            )
        elif saved is not None:
            text = (
                f"training interrupted by {name} at {where}: saved {saved}; continue with "
                f"ckpt_path=last hydra.run.dir={output_dir}"
            )
        else:
            why = (
                "a second signal: stopped at once"
                if self.count > 1
                else "not during a training step"
                if has_callback
                else "callbacks.interrupt_checkpoint is off"
            )
            text = (
                f"training interrupted by {name} at {where} ({why}): this step was not saved; "
                f"the checkpoints of finished epochs in {output_dir / 'checkpoints'} are kept"
            )
        return RunInterrupted(text, status)
