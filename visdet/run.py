"""The training run behind ``train.py``: instantiate from config, fit, test the best
checkpoint, write ``metrics.json`` and print the final line."""

from __future__ import annotations

import json
import logging
import math
import resource
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from visdet.atomic_write import write_text_atomic
from visdet.config.launch import keep_file_logs_on_rank_zero
from visdet.config.validate import validate_config
from visdet.resume import resolve_ckpt_path

log = logging.getLogger(__name__)

FINAL_KEYS = ("mAP", "mAP50", "mAP75")


def instantiate_dict(node: DictConfig | None) -> list:
    """Objects of a group whose entries each have a ``_target_`` (callbacks, loggers)."""
    if not node:
        return []
    return [instantiate(v) for v in node.values() if v is not None and "_target_" in v]


def format_per_class(per_class: dict[str, float]) -> str:
    width = max([5] + [len(k) for k in per_class])
    rows = [f"{'class'.ljust(width)}  AP"]
    rows += [
        f"{k.ljust(width)}  {'n/a' if math.isnan(v) else f'{v:.4f}'}" for k, v in per_class.items()
    ]
    return "\n".join(rows)


def train(cfg: DictConfig) -> dict:
    """Run training as configured; returns the metrics written to metrics.json."""
    validate_config(cfg)
    ckpt_path = resolve_ckpt_path(cfg)
    keep_file_logs_on_rank_zero()
    # Lightning notices that the module (not the datamodule) transforms batches: intended.
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    warnings.filterwarnings("ignore", message=".*treespec, LeafSpec.*")
    # val/* metrics are computed from every process's gathered detections: no sync_dist needed
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed.*")
    start = time.perf_counter()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    # optim.param_groups (optional) builds the groups; the rest of optim is the optimizer
    groups_cfg = cfg.optim.get("param_groups")
    optim_cfg = OmegaConf.masked_copy(cfg.optim, [k for k in cfg.optim if k != "param_groups"])
    module = instantiate(
        cfg.model,
        optimizer=instantiate(optim_cfg),
        scheduler=instantiate(cfg.sched) if cfg.get("sched") else None,
        augment=instantiate(cfg.aug),
        param_groups=instantiate(groups_cfg) if groups_cfg else None,
    )
    callbacks = instantiate_dict(cfg.get("callbacks"))
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    save_config(cfg, output_dir)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    results = dict(module.last_results)
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    if cfg.get("test", True) and not trainer.fast_dev_run:
        trainer.test(
            module, datamodule=datamodule, ckpt_path=best if best else None, weights_only=False
        )
        results = dict(module.last_results)
    metrics = {
        **{f"val/{k}": v for k, v in results.items() if k != "per_class"},
        "per_class_AP": results.get("per_class", {}),
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "time_s": round(time.perf_counter() - start, 1),
        "best_checkpoint": best,
        "skipped_images": module.skipped_images,
        "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "peak_memory_mb": _peak_memory_mb(module),
        "last_fit_metrics": fit_metrics,
    }
    _report(metrics, output_dir)
    return metrics


def _peak_memory_mb(module) -> dict[str, float]:
    """Peak resident memory of this process (CPU) and peak allocated CUDA memory, in MiB."""
    out = {"process_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if module.device.type == "cuda":
        out["cuda_allocated"] = torch.cuda.max_memory_allocated(module.device) / 2**20
    return out


@rank_zero_only
def save_config(cfg: DictConfig, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config_resolved.yaml").write_text(
        OmegaConf.to_yaml(
            OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True
        )
    )


@rank_zero_only
def _report(metrics: dict, output_dir: Path) -> None:
    write_text_atomic(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    if metrics["per_class_AP"]:
        log.info("per-class AP (val):\n%s", format_per_class(metrics["per_class_AP"]))
    if metrics["skipped_images"]:
        log.warning("%d unreadable images were skipped", metrics["skipped_images"])
    log.info(
        "outputs: %s (checkpoints: %s, metrics.json, logs)",
        output_dir,
        metrics["best_checkpoint"] or "none",
    )
    final = " ".join(f"val/{k}={metrics.get(f'val/{k}', float('nan')):.4f}" for k in FINAL_KEYS)
    print(f"final: {final} epochs={metrics['epochs']} time={metrics['time_s']:.0f}s", flush=True)


def metric_value(metrics: dict, name: str) -> float:
    """The value of ``optimized_metric`` (e.g. ``val/mAP``) for sweepers; nan if absent."""
    value = metrics.get(name)
    return float("nan") if value is None else float(value)
