"""The one training-run skeleton behind ``visdet train`` and ``visdet train-encoder``:
check the config, claim the run directory (writable, ``run.lock``, not a finished run's
unless resuming it: visdet/runs/run_dir.py), find the checkpoint to resume, seed, build the
datamodule, the LightningModule, callbacks, loggers and trainer from config, fit, then let
the task collect and report its metrics (``metrics.json`` is written atomically by rank
zero). Checkpoints are written atomically (``AtomicCheckpointIO``); SIGTERM and Ctrl+C save
the current step and end the run with one line (visdet/callbacks/interrupt.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.fabric.plugins import CheckpointIO, ClusterEnvironment
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from visdet.callbacks import optuna_pruning
from visdet.callbacks.interrupt import InterruptCheckpoint, Interrupts
from visdet.config.launch import is_rank_zero, keep_file_logs_on_rank_zero
from visdet.config.validate import TOP_LEVEL, TRAIN_GROUPS, validate_config
from visdet.io.atomic_write import write_text_atomic
from visdet.io.strict_json import dumps_strict
from visdet.lightning.atomic_checkpoint import AtomicCheckpointIO
from visdet.lightning.trackers import close_trackers, log_config, save_tracker_ids
from visdet.models.weights.checkpoint_state import allowing_plain_data, check_weights_file
from visdet.runs.resume import resolve_ckpt_path
from visdet.runs.run_dir import (
    RunDirError,
    RunLock,
    check_writable,
    remove_incomplete_writes,
    used_by,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitTask:
    """What differs between training tasks.

    Attributes:
        build_module: ``(cfg, datamodule) -> LightningModule``.
        collect: ``(cfg, trainer, module, datamodule) -> metrics`` after fitting (e.g. test
            the best checkpoint); the skeleton adds ``time_s``.
        report: ``(metrics, output_dir)``: log the summary and print the ``final:`` line
            (rank zero only; metrics.json is already written).
        top_level, required: the config's allowed and required top-level keys.
    """

    build_module: Callable
    collect: Callable[..., dict]
    report: Callable[[dict, Path], None]
    top_level: frozenset[str] = frozenset(TOP_LEVEL)
    required: tuple[str, ...] = TRAIN_GROUPS


def instantiate_dict(node: DictConfig | None) -> list:
    """Objects of a group whose entries each have a ``_target_`` (callbacks, loggers)."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None and "_target_" in v]


def fit(cfg: DictConfig, task: FitTask) -> dict:
    """Run ``task`` as configured; returns the metrics written to metrics.json."""
    validate_config(cfg, top_level=task.top_level, required=task.required)
    output_dir = Path(cfg.paths.output_dir)
    stop = Interrupts()
    lock = None
    with stop:
        try:
            lock = claim_run_dir(cfg, output_dir) if is_rank_zero() else None
            return _fit(cfg, task, output_dir, stop)
        except (KeyboardInterrupt, SIGTERMException) as e:
            if stop.signal is None:  # Lightning's SIGTERM before ours was installed
                stop.signal = "SIGTERM" if isinstance(e, SIGTERMException) else "SIGINT"
            raise _interrupted(stop, output_dir, finished=False) from None
        finally:
            if lock is not None:
                lock.release()


RESUME_ENV = "VISDET_RESUME_CKPT"  # rank 0's choice, for the processes Lightning starts


def claim_run_dir(cfg: DictConfig, output_dir: Path) -> RunLock:
    """Rank 0: refuse an unwritable output directory or one in use or holding a run this
    one does not resume; take ``run.lock``; clear incomplete writes of a killed run."""
    check_writable(output_dir)
    lock = RunLock(output_dir).acquire()
    try:
        used = used_by(output_dir)
        if used and not _resumes(cfg, output_dir):
            what = "a finished run" if "metrics.json" in used else "an earlier run"
            shown = ", ".join(used[:3]) + (", ..." if len(used) > 3 else "")
            raise RunDirError(
                f"run directory {output_dir} already holds {what} ({shown}): not overwriting "
                "it; resume it with ckpt_path=last (or resume_if_exists=true), or choose "
                "another hydra.run.dir"
            )
        remove_incomplete_writes(output_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def _resumes(cfg: DictConfig, output_dir: Path) -> bool:
    """Whether this run continues the run of ``output_dir``: ``ckpt_path=last``,
    ``resume_if_exists=true`` or a ``ckpt_path`` inside that directory."""
    value = cfg.get("ckpt_path")
    if str(value) == "last" or cfg.get("resume_if_exists", False):
        return True
    return value is not None and output_dir.resolve() in Path(value).resolve().parents


def _resume_path(cfg: DictConfig) -> str | None:
    if not is_rank_zero() and RESUME_ENV in os.environ:
        return os.environ[RESUME_ENV] or None  # the process Lightning started for rank N
    ckpt_path = resolve_ckpt_path(cfg)
    if is_rank_zero():
        os.environ[RESUME_ENV] = ckpt_path or ""
    return ckpt_path


def trainer_plugins(cfg: DictConfig) -> list:
    """``trainer.plugins`` plus visdet's atomic checkpoint writer (unless another
    ``CheckpointIO`` is given) and, under SLURM, Lightning's SLURM environment with the
    requeue of ``cfg.slurm`` (``auto_requeue``, ``requeue_signal``)."""
    given = cfg.trainer.get("plugins")
    plugins = list(instantiate(given)) if given else []
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    if SLURMEnvironment.detect() and not any(isinstance(p, ClusterEnvironment) for p in plugins):
        slurm = cfg.get("slurm") or {}
        plugins.append(
            SLURMEnvironment(
                auto_requeue=bool(slurm.get("auto_requeue", True)),
                requeue_signal=signal.Signals[str(slurm.get("requeue_signal", "SIGUSR1"))],
            )
        )
    return plugins


def _interrupt_callback(trainer: L.Trainer) -> InterruptCheckpoint | None:
    return next((c for c in trainer.callbacks if isinstance(c, InterruptCheckpoint)), None)


def _interrupted(stop: Interrupts, output_dir: Path, finished: bool):
    callback = _interrupt_callback(stop.trainer) if stop.trainer is not None else None
    saved = callback.saved if callback is not None else None
    return stop.message(saved, finished, output_dir, has_callback=callback is not None)


def _fit(cfg: DictConfig, task: FitTask, output_dir: Path, stop: Interrupts) -> dict:
    ckpt_path = _resume_path(cfg)
    trust = bool(cfg.get("trust_pickled_checkpoint", False))
    if ckpt_path is not None:  # unsafe or corrupt: one line naming it, before any work
        check_weights_file(ckpt_path, "ckpt_path", trust, "trust_pickled_checkpoint")
    keep_file_logs_on_rank_zero()
    # Lightning notices that a module (not the datamodule) transforms batches: intended.
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")  # inside Lightning
    # val/* metrics are computed from every process's gathered results: no sync_dist needed
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed.*")
    start = time.perf_counter()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = task.build_module(cfg, datamodule)
    callbacks = instantiate_dict(cfg.get("callbacks"))
    pruning = optuna_pruning.from_environment(cfg, output_dir)  # a trial of an Optuna sweep
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks + ([pruning] if pruning else []),
        logger=instantiate_dict(cfg.get("logger")) or False,
        plugins=trainer_plugins(cfg),
    )
    stop.trainer = trainer
    save_config(cfg, output_dir)
    log_config(trainer.loggers, cfg)
    save_tracker_ids(trainer.loggers, output_dir)
    finished = False
    try:
        # visdet's checkpoints hold tensors, numbers, strings and containers only: resuming
        # never unpickles code (trust_pickled_checkpoint=true also allows numpy data)
        allowed = (
            allowing_plain_data(ckpt_path, "ckpt_path", "trust_pickled_checkpoint")
            if trust and ckpt_path is not None
            else contextlib.nullcontext()
        )
        with allowed:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if stop.signal is None:  # a signal Lightning ended fit on without raising
            finished = True
            metrics = task.collect(cfg, trainer, module, datamodule)
    except SystemExit:  # Lightning's exit after a second Ctrl+C
        if stop.signal is None:
            raise
    if stop.signal is not None:
        raise _interrupted(stop, output_dir, finished)
    metrics["time_s"] = round(time.perf_counter() - start, 1)
    _write_and_report(metrics, output_dir, task.report)
    close_trackers(trainer.loggers, output_dir, metrics, best_checkpoint(trainer))
    return metrics


def best_checkpoint(trainer: L.Trainer) -> str | None:
    return getattr(trainer.checkpoint_callback, "best_model_path", "") or None


@rank_zero_only
def save_config(cfg: DictConfig, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    write_text_atomic(
        output_dir / "config_resolved.yaml", OmegaConf.to_yaml(resolved, resolve=True)
    )


@rank_zero_only
def _write_and_report(metrics: dict, output_dir: Path, report: Callable) -> None:
    # strict JSON (a NaN metric, e.g. mAP of a size with no objects, is written as null)
    write_text_atomic(output_dir / "metrics.json", dumps_strict(metrics))
    report(metrics, output_dir)
