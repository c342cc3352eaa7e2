"""The encoder fine-tuning task behind ``visdet train-encoder``: an encoder with a linear
head on a classification dataset; ends with the ``final:`` line."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from visdet.runs.fit import FitTask, best_checkpoint, fit

log = logging.getLogger(__name__)

TOP_LEVEL = frozenset({
    "encoder", "data", "model", "optim", "sched", "trainer", "callbacks", "logger", "paths",
    "hydra", "seed", "task_name", "optimized_metric", "ckpt_path", "trust_pickled_checkpoint",
    "resume_if_exists", "slurm", "tags", "experiment", "debug",
})  # fmt: skip
REQUIRED = ("encoder", "data", "model", "optim", "trainer")


def build_module(cfg: DictConfig, datamodule):
    classes = datamodule.classes  # builds the datasets: the head needs the class count
    return instantiate(
        cfg.model,
        encoder=instantiate(cfg.encoder),
        num_classes=len(classes),
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(cfg.sched) if cfg.get("sched") else None,
    )


def collect(cfg: DictConfig, trainer, module, datamodule) -> dict:
    checkpoint = trainer.checkpoint_callback
    score = None if checkpoint is None else checkpoint.best_model_score
    return {
        **{f"val/{k}": v for k, v in module.last_results.items()},
        "classes": datamodule.classes,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "best_checkpoint": best_checkpoint(trainer),
        "best_score": None if score is None else float(score),
    }


def report(metrics: dict, output_dir: Path) -> None:
    log.info("outputs: %s (best checkpoint: %s)", output_dir, metrics["best_checkpoint"] or "none")
    acc = metrics.get("val/acc", float("nan"))
    print(
        f"final: val/acc={acc:.4f} classes={len(metrics['classes'])} epochs={metrics['epochs']} "
        f"time={metrics['time_s']:.0f}s",
        flush=True,
    )


ENCODER_TASK = FitTask(build_module, collect, report, TOP_LEVEL, REQUIRED)


def train_encoder(cfg: DictConfig) -> dict:
    """Fine-tune as configured; returns the metrics written to metrics.json."""
    return fit(cfg, ENCODER_TASK)
