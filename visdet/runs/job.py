"""How every ``visdet`` tool runs and fails: ``run_tool`` for one-shot tools (export, bench,
features) and ``run_job`` for training runs, single or inside a sweep.

A run stops on a known error with one line (``config error: ...``, ``training stopped: ...``,
``export failed: ...``) and a non-zero exit status; that line is also written to the run's
log file. In a
multirun (``train.py -m``) a failing job must not stop the sweep: the failure is written to
``job_error.json`` in the job's directory, logged, and the job returns None, which both
sweepers accept: the basic sweeper ignores return values, the Optuna sweeper (1.3.0) marks the
trial as failed. (A nan would not do: with Optuna 2.10 the sweeper's failure path then passes
the nan to ``study.tell`` together with the FAIL state, which raises and ends the sweep.)"""

from __future__ import annotations

import json
import logging
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from visdet.callbacks.interrupt import RunInterrupted
from visdet.config.validate import ConfigError
from visdet.data.coco import DatasetError
from visdet.io.atomic_write import write_text_atomic
from visdet.lightning import NonFiniteLossError
from visdet.lightning.atomic_checkpoint import CheckpointWriteError
from visdet.models.weights.checkpoint_state import WeightsFileError
from visdet.runs.run_dir import RunDirError
from visdet.sweep.job_files import ERROR_FILE

log = logging.getLogger(__name__)

CONFIG_ERRORS = (ConfigError, InstantiationException)
# FloatingPointError: a non-finite encoder loss; ConnectionError: a weights URL not fetched;
# WeightsFileError: a checkpoint that is corrupt or would need unsafe unpickling;
# RunDirError: an output directory not writable, in use, or holding a run not resumed;
# CheckpointWriteError: a checkpoint not written (disk full), the previous one kept
TRAINING_ERRORS = (
    RunDirError,
    CheckpointWriteError,
    NonFiniteLossError,
    DatasetError,
    FileNotFoundError,
    FloatingPointError,
    ConnectionError,
    WeightsFileError,
)


def is_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def error_message(error: BaseException, short: bool = False) -> str:
    """The one-line message shown for a failed run: what kind of failure, and why. ``short``
    names the root cause only (``config error: ValueError: data.batch_size must be >= 1``)
    instead of Hydra's wrapping of an instantiation error. A file error raised while an
    object is built from config (e.g. an unreadable ``model.init_from``) is reported as
    itself, not as a config error."""
    cause = error.__cause__ if isinstance(error, InstantiationException) else None
    if isinstance(cause, WeightsFileError | FileNotFoundError | ConnectionError | ConfigError):
        error = cause
    if isinstance(error, CONFIG_ERRORS):
        kind = "config error"
    elif isinstance(error, TRAINING_ERRORS):
        kind = "training stopped"
    else:
        kind = "job failed"
    if not short:
        detail = str(error) if kind != "job failed" else f"{type(error).__name__}: {error}"
        return f"{kind}: {detail}"
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    return f"{kind}: {type(root).__name__}: {root}"


def metric_value(metrics: dict, name) -> float | list[float]:
    """The value of ``optimized_metric`` (e.g. ``val/mAP``) for sweepers; nan if absent. A
    list of names (several objectives) gives a list of values."""
    if not isinstance(name, str):
        return [metric_value(metrics, str(n)) for n in name]
    value = metrics.get(name)
    return float("nan") if value is None else float(value)


def exit_with(message: str, status: int = 1) -> NoReturn:
    """Write ``message`` to the run's log file (which then says why it stopped) and exit with
    it (status 1, or ``status``): the terminal shows it once, from the exit."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    if status == 1:
        sys.exit(message)
    print(message, file=sys.stderr, flush=True)
    sys.exit(status)


def run_tool(
    cfg: DictConfig,
    tool_fn: Callable[[DictConfig], object],
    failure: str,
    known: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError),
):
    """Run a one-shot tool; a config error or one of the ``known`` failures exits with one
    line: ``config error: ...`` or ``<failure> failed: ...``. Others propagate."""
    try:
        return tool_fn(cfg)
    except CONFIG_ERRORS as e:
        exit_with(f"config error: {e}")
    except known as e:
        exit_with(f"{failure} failed: {e}")


def run_job(
    cfg: DictConfig,
    train_fn: Callable[[DictConfig], dict],
    multirun: bool | None = None,
    job_dir: str | Path | None = None,
) -> float | list[float] | None:
    """Run ``train_fn(cfg)`` and return the value of ``cfg.optimized_metric`` (a list of
    values when it names several metrics).

    Single run (``multirun`` False): returns the value (nan if absent); a config or training
    error exits with its message (``SystemExit``, status 1); other exceptions propagate.
    A run stopped by SIGTERM or SIGINT (``RunInterrupted``) exits with its line and status
    128 + signal number, also in a multirun (the sweep stops).
    Multirun: any ``Exception`` is recorded in ``<job_dir>/job_error.json`` (status, error
    type, message, traceback) and logged, and the job returns None so the sweep goes on; a
    finished job whose metric is absent or nan returns None too (a failed Optuna trial).
    ``multirun`` and ``job_dir`` default to what Hydra says about the running job.
    """
    if multirun is None:
        multirun = is_multirun()
    name = cfg.get("optimized_metric", "val/mAP")
    if not multirun:
        try:
            return metric_value(train_fn(cfg), name)
        except (*CONFIG_ERRORS, *TRAINING_ERRORS) as e:
            exit_with(error_message(e))
        except RunInterrupted as e:
            exit_with(e.message, e.status)
    job_dir = Path(HydraConfig.get().runtime.output_dir if job_dir is None else job_dir)
    (job_dir / ERROR_FILE).unlink(missing_ok=True)  # left by an earlier sweep in this dir
    try:
        value = metric_value(train_fn(cfg), name)
    except RunInterrupted as e:
        exit_with(e.message, e.status)
    except Exception as e:
        record_failure(job_dir, e)
        return None
    if any(math.isnan(v) for v in (value if isinstance(value, list) else [value])):
        log.warning("%s is absent or nan: the sweep counts this job as failed", name)
        return None
    return value


def record_failure(job_dir: Path, error: Exception) -> None:
    """Write ``job_error.json`` for a failed job and log the failure (with its traceback
    when the error is not a known config or training error)."""
    message = error_message(error)
    record = {
        "status": "failed",
        "error_type": type(error).__name__,
        "message": message,
        "short_message": error_message(error, short=True),
        "traceback": "".join(traceback.format_exception(error)),
    }
    write_text_atomic(job_dir / ERROR_FILE, json.dumps(record, indent=2))
    known = isinstance(error, (*CONFIG_ERRORS, *TRAINING_ERRORS))
    log.error(
        "%s (recorded in %s; the sweep goes on)",
        message,
        job_dir / ERROR_FILE,
        exc_info=None if known else error,
    )
