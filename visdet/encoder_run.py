"""The run behind ``python -m visdet.train_encoder``: fine-tune an encoder with a linear head
on a classification dataset, write ``metrics.json`` and print the final line."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from visdet.atomic_write import write_text_atomic
from visdet.config.launch import keep_file_logs_on_rank_zero
from visdet.config.validate import validate_config
from visdet.resume import resolve_ckpt_path
from visdet.run import instantiate_dict, save_config

log = logging.getLogger(__name__)

TOP_LEVEL = {
    "encoder", "data", "model", "optim", "sched", "trainer", "callbacks", "logger", "paths",
    "hydra", "seed", "task_name", "optimized_metric", "ckpt_path", "tags", "experiment", "debug",
}  # fmt: skip
REQUIRED = ("encoder", "data", "model", "optim", "trainer")


def train_encoder(cfg: DictConfig) -> dict:
    """Fine-tune as configured; returns the metrics written to metrics.json."""
    validate_config(cfg, top_level=TOP_LEVEL, required=REQUIRED)
    ckpt_path = resolve_ckpt_path(cfg)
    keep_file_logs_on_rank_zero()
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")  # inside Lightning
    start = time.perf_counter()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    classes = datamodule.classes  # builds the datasets: the head needs the class count
    module = instantiate(
        cfg.model,
        encoder=instantiate(cfg.encoder),
        num_classes=len(classes),
        optimizer=instantiate(cfg.optim),
        scheduler=instantiate(cfg.sched) if cfg.get("sched") else None,
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_dict(cfg.get("callbacks")),
        logger=instantiate_dict(cfg.get("logger")) or False,
    )
    save_config(cfg, output_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    metrics = {
        **{f"val/{k}": v for k, v in module.last_results.items()},
        "classes": classes,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "time_s": round(time.perf_counter() - start, 1),
        "best_checkpoint": best,
        "best_score": None
        if trainer.checkpoint_callback is None
        or trainer.checkpoint_callback.best_model_score is None
        else float(trainer.checkpoint_callback.best_model_score),
    }
    _report(metrics, output_dir)
    return metrics


@rank_zero_only
def _report(metrics: dict, output_dir: Path) -> None:
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    log.info("outputs: %s (best checkpoint: %s)", output_dir, metrics["best_checkpoint"] or "none")
    acc = metrics.get("val/acc", float("nan"))
    print(
        f"final: val/acc={acc:.4f} classes={len(metrics['classes'])} epochs={metrics['epochs']} "
        f"time={metrics['time_s']:.0f}s",
        flush=True,
    )
