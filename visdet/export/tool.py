"""The export run behind ``visdet export``: validate, build, export, report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from visdet.config.validate import validate_config
from visdet.export.exporter import BackendResult, format_results
from visdet.io.atomic_write import write_text_atomic

log = logging.getLogger(__name__)

TOP_LEVEL = {
    "encoder", "export", "paths", "hydra", "task_name", "seed", "ckpt", "format", "detector",
}  # fmt: skip


def run_export(cfg: DictConfig) -> list[BackendResult] | dict:
    """An encoder export, or a detector export when ``ckpt`` is given."""
    if cfg.get("ckpt") is not None:
        return run_detector_export(cfg)
    if cfg.get("format") is not None:
        raise ValueError("format= selects detector formats: give the checkpoint with ckpt=PATH")
    validate_config(cfg, top_level=TOP_LEVEL, required=("encoder", "export"))
    torch.manual_seed(cfg.get("seed") or 0)
    encoder = instantiate(cfg.encoder)
    export = instantiate(cfg.export)
    results = export(encoder=encoder)
    output_dir = Path(cfg.export.output_dir)
    report = [
        {
            "backend": r.backend,
            "weights": r.weights.name,
            "spec": r.spec.name,
            "size_mb": round(r.size_mb, 2),
            "export_s": round(r.export_s, 2),
            "verify_s": round(r.verify_s, 2),
            "max_abs_diff": r.max_abs_diff,
            "dynamic_hw": r.dynamic_hw,
            "checks": [
                {"batch": b, "height": h, "width": w, "max_abs_diff": d} for b, h, w, d in r.checks
            ],
        }
        for r in results
    ]
    write_text_atomic(output_dir / "export_report.json", json.dumps(report, indent=2) + "\n")
    print(format_results(results), flush=True)
    print(f"exported to {output_dir}: " + ", ".join(r.spec.name for r in results), flush=True)
    return results


def run_detector_export(cfg: DictConfig) -> dict:
    from omegaconf import OmegaConf

    from visdet.export.detector_export import export_detector, parse_settings

    validate_config(cfg, top_level=TOP_LEVEL, required=("ckpt",))
    formats = cfg.get("format")
    if OmegaConf.is_list(formats):
        formats = list(formats)
    settings = parse_settings(OmegaConf.to_container(cfg.get("detector") or {}), formats)
    output_dir = Path(cfg.export.output_dir)
    report = export_detector(cfg.ckpt, output_dir, settings, seed=cfg.get("seed") or 0)
    files = [f for r in report["formats"] for f in r["files"]]
    print(f"exported to {output_dir}: " + ", ".join(files), flush=True)
    return report
