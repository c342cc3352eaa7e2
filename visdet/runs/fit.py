"""The one training-run skeleton behind ``visdet train`` and ``visdet train-encoder``:
check the config, find the checkpoint to resume, seed, build the datamodule, the
LightningModule, callbacks, loggers and trainer from config, fit, then let the task collect
and report its metrics (``metrics.json`` is written atomically by rank zero)."""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from visdet.config.launch import keep_file_logs_on_rank_zero
from visdet.config.validate import TOP_LEVEL, TRAIN_GROUPS, validate_config
from visdet.io.atomic_write import write_text_atomic
from visdet.models.weights.checkpoint_state import load_weights_file
from visdet.runs.resume import resolve_ckpt_path

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
    ckpt_path = resolve_ckpt_path(cfg)
    trust = bool(cfg.get("trust_pickled_checkpoint", False))
    if ckpt_path is not None:  # unsafe or corrupt: one line naming it, before any work
        load_weights_file(ckpt_path, "ckpt_path", trust, "trust_pickled_checkpoint")
    keep_file_logs_on_rank_zero()
    # Lightning notices that a module (not the datamodule) transforms batches: intended.
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")  # inside Lightning
    # val/* metrics are computed from every process's gathered results: no sync_dist needed
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed.*")
    start = time.perf_counter()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    module = task.build_module(cfg, datamodule)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_dict(cfg.get("callbacks")),
        logger=instantiate_dict(cfg.get("logger")) or False,
    )
    save_config(cfg, output_dir)
    # visdet's checkpoints hold tensors, numbers, strings and containers only: resuming
    # never unpickles code from a checkpoint file (unless trust_pickled_checkpoint=true)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=not trust)
    metrics = task.collect(cfg, trainer, module, datamodule)
    metrics["time_s"] = round(time.perf_counter() - start, 1)
    _write_and_report(metrics, output_dir, task.report)
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
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    report(metrics, output_dir)
