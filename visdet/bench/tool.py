"""The run behind ``visdet bench``: measure, write results.json, print a table,
and write the HTML/Markdown report."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from visdet.io.atomic_write import write_text_atomic
from visdet.bench.runner import run_components
from visdet.bench.schema import new_run, save_run
from visdet.bench.system import run_system
from visdet.config.validate import ConfigError, validate_config
from visdet.io.text_table import format_columns

log = logging.getLogger(__name__)

BENCH_KEYS = {
    "components", "groups", "batch_sizes", "image_sizes", "box_counts", "roi_counts",
    "repeats", "warmup", "flops", "device", "system", "threads",
}  # fmt: skip
TOP_LEVEL = {"bench", "preset", "paths", "hydra", "task_name", "seed", "output_dir", "report"}


def _check(cfg: DictConfig) -> None:
    validate_config(cfg, top_level=TOP_LEVEL, required=("bench", "preset"))
    unknown = sorted(set(cfg.bench.keys()) - BENCH_KEYS)
    if unknown:
        raise ConfigError(
            f"bench.{unknown[0]}: unknown key; allowed: {', '.join(sorted(BENCH_KEYS))}"
        )
    if cfg.bench.device not in ("cpu", "cuda") and not str(cfg.bench.device).startswith("cuda:"):
        raise ConfigError(f"bench.device: expected cpu or cuda, got {cfg.bench.device!r}")
    if str(cfg.bench.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("bench.device: cuda requested but no CUDA device is available")


def format_table(results: list[dict]) -> str:
    header = (
        "component",
        "impl",
        "case",
        "params",
        "GFLOPs",
        "fwd ms",
        "IQR",
        "fwd+bwd ms",
        "peak MB",
        "img/s",
    )
    rows = [header]
    for r in results:
        fwd, fb = r["forward_ms"], r["forward_backward_ms"]
        rows.append(
            (
                r["component"], str(r["impl"]), r["case"],
                f"{r['params']:,}" if r["params"] else "-",
                "-" if r["flops"] is None else f"{r['flops'] / 1e9:.3f}",
                "-" if fwd is None else f"{fwd['median']:.2f}",
                "-" if fwd is None else f"{fwd['iqr']:.2f}",
                "-" if fb is None else f"{fb['median']:.2f}",
                "-" if r["peak_memory_mb"] is None else f"{r['peak_memory_mb']:.1f}",
                "-" if not r["throughput"] else f"{r['throughput']['images_per_s']:.1f}",
            )
        )  # fmt: skip
    return "\n".join(format_columns(rows))


def run_bench(cfg: DictConfig) -> dict:
    _check(cfg)
    b = cfg.bench
    if b.threads:
        torch.set_num_threads(int(b.threads))
    settings = OmegaConf.to_container(b, resolve=True)
    settings["preset"] = OmegaConf.to_container(cfg.preset, resolve=True)
    run = new_run("components", settings, b.device)
    # groups may name "system" (the end-to-end benchmarks); nothing selected = everything
    groups = [g for g in b.groups if g != "system"]
    everything = not b.components and not b.groups
    if everything or b.components or groups:
        run["results"] += run_components(
            components=list(b.components), groups=groups, batch_sizes=list(b.batch_sizes),
            image_sizes=list(b.image_sizes), box_counts=list(b.box_counts),
            roi_counts=list(b.roi_counts), repeats=b.repeats, warmup=b.warmup, flops=b.flops,
            device=b.device,
        )  # fmt: skip
    if b.system and (everything or "system" in b.groups):
        s = cfg.preset.system
        run["results"] += run_system(
            image_size=s.image_size, train_batch_size=s.train_batch_size,
            train_steps=s.train_steps, latency_batch_sizes=list(s.latency_batch_sizes),
            repeats=s.repeats, warmup=b.warmup, data_dir=cfg.paths.data_dir,
            data_batches=s.data_batches, device=b.device,
        )  # fmt: skip
    out = Path(cfg.output_dir)
    path = save_run(run, out / "results.json")
    print(format_table(run["results"]), flush=True)
    if cfg.report:
        from visdet.bench.report import build_report

        html, markdown = build_report([run], [out.name])
        write_text_atomic(out / "report.html", html)
        write_text_atomic(out / "report.md", markdown)
    print(
        f"results: {path}" + (f" (report: {out / 'report.html'})" if cfg.report else ""), flush=True
    )
    return run
