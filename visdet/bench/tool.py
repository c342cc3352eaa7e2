"""The run behind ``visdet bench``: measure, write results.json, print a table,
and write the HTML/Markdown report.

``bench.groups`` selects component groups (visdet/bench/components.py) and two groups run
here: ``system`` (visdet/bench/system.py, part of "everything") and ``core`` (the core
benchmark with torchvision references, visdet/bench/core.py, only when named, as
``preset=core`` does)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from visdet.bench.core import CORE_KEYS, run_core
from visdet.bench.reference import LEGEND
from visdet.bench.runner import run_components
from visdet.bench.schema import new_run, save_run
from visdet.bench.system import run_system
from visdet.config.validate import ConfigError, validate_config
from visdet.io.atomic_write import write_text_atomic
from visdet.io.text_table import format_columns

log = logging.getLogger(__name__)

BENCH_KEYS = {
    "components", "groups", "batch_sizes", "image_sizes", "box_counts", "roi_counts",
    "repeats", "warmup", "flops", "device", "system", "threads", "exported",
    "exported_batch_sizes", "exported_sizes",
}  # fmt: skip
TOP_LEVEL = {"bench", "preset", "paths", "hydra", "task_name", "seed", "output_dir", "report"}
RUN_HERE = ("system", "core")  # groups that are not component groups


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
    if "core" in cfg.bench.groups:
        core = cfg.preset.get("core")
        if core is None:
            raise ConfigError(
                "bench.groups: core needs the preset's core section, which this preset has "
                "not; use preset=core"
            )
        unknown = sorted(set(core.keys()) - set(CORE_KEYS))
        if unknown:
            raise ConfigError(
                f"preset.core.{unknown[0]}: unknown key; allowed: {', '.join(CORE_KEYS)}"
            )


def _reference_cells(r: dict) -> tuple[str, str, str]:
    ref = r["extra"].get("reference")
    if ref is None:
        return "-", "-", "-"
    return f"{ref['ms']:.1f}", f"{ref['ratio']:.2f}", ref["source"]


def _mfu_cell(r: dict) -> str:
    if "gflop_per_s" in r["extra"]:
        return f"peak {r['extra']['gflop_per_s']:.0f} GFLOP/s"
    return f"{100 * r['extra']['mfu']:.0f}%" if "mfu" in r["extra"] else "-"


def format_table(results: list[dict]) -> str:
    """The results table; with reference columns when a result has ``extra.reference`` and
    an MFU column when one has ``extra.mfu`` (the core benchmark's training steps)."""
    with_reference = any("reference" in r["extra"] for r in results)
    with_mfu = any("mfu" in r["extra"] for r in results)
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
        *(("MFU",) if with_mfu else ()),
        *(("ref ms", "ratio", "reference") if with_reference else ()),
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
                *((_mfu_cell(r),) if with_mfu else ()),
                *(_reference_cells(r) if with_reference else ()),
            )
        )  # fmt: skip
    lines = format_columns(rows)
    return "\n".join([*lines, LEGEND] if with_reference else lines)


def format_parts(results: list[dict]) -> str | None:
    """Forward ms of each part (``extra.parts_ms``) and the rest of the timed median, for the
    results that have parts (the core benchmark's detectors); None when none has."""
    timed = [r for r in results if r["extra"].get("parts_ms")]
    if not timed:
        return None
    names = list(dict.fromkeys(n for r in timed for n in r["extra"]["parts_ms"]))
    rows = [("component", "impl", "case", "total ms", *(f"{n} ms" for n in names), "rest ms")]
    for r in timed:
        total = (r["forward_backward_ms"] or r["forward_ms"])["median"]
        parts = r["extra"]["parts_ms"]
        cells = [f"{parts[n]:.1f}" if n in parts else "-" for n in names]
        rest = total - sum(parts.values())
        rows.append((r["component"], r["impl"], r["case"], f"{total:.1f}", *cells, f"{rest:.1f}"))
    note = (
        "parts: median forward time within the timed calls; rest: the median minus the parts"
        " (backward, transform, glue; below 0 only in a noisy run)"
    )
    return "\n".join([*format_columns(rows), note])


def run_bench(cfg: DictConfig) -> dict:
    _check(cfg)
    b = cfg.bench
    if b.threads:
        torch.set_num_threads(int(b.threads))
    settings = OmegaConf.to_container(b, resolve=True)
    settings["preset"] = OmegaConf.to_container(cfg.preset, resolve=True)
    run = new_run("components", settings, b.device)
    # groups may name "system" and "core" (run here); nothing selected = everything but core
    groups = [g for g in b.groups if g not in RUN_HERE]
    exported = list(b.get("exported") or [])
    everything = not b.components and not b.groups and not exported
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
    if exported:
        from visdet.bench.exported import exported_latency

        run["results"] += exported_latency(
            exported, list(b.exported_batch_sizes), [list(s) for s in b.exported_sizes],
            repeats=b.repeats, warmup=b.warmup,
        )  # fmt: skip
    if "core" in b.groups:
        core = OmegaConf.to_container(cfg.preset.core, resolve=True)
        run["results"] += run_core(warmup=b.warmup, device=b.device, **core)
    out = Path(cfg.output_dir)
    path = save_run(run, out / "results.json")
    print(format_table(run["results"]), flush=True)
    if exported:
        from visdet.bench.exported import format_exported

        print(f"\n{format_exported(run['results'])}", flush=True)
    parts = format_parts(run["results"])
    if parts:
        print(f"\n{parts}", flush=True)
    if cfg.report:
        from visdet.bench.report import build_report

        html, markdown = build_report([run], [out.name])
        write_text_atomic(out / "report.html", html)
        write_text_atomic(out / "report.md", markdown)
    print(
        f"results: {path}" + (f" (report: {out / 'report.html'})" if cfg.report else ""), flush=True
    )
    return run
