"""A history of benchmark runs (JSON Lines, one run per line) and its trend plot.

Each line: ``{"created", "git_commit", "kind", "device", "medians": {"<component>/<impl>/<case>":
{"forward_ms": ..., "forward_backward_ms": ..., "peak_memory_mb": ..., "images_per_s": ...}}}``
(only the metrics a result has).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from visdet.bench.schema import TIMING_METRICS, check_run, result_key
from visdet.io.atomic_write import write_bytes_atomic, write_text_atomic

DPI = 100


def run_summary(run: dict) -> dict:
    """The history line of one run: when, which commit, which device, and its medians."""
    check_run(run)
    env = run["environment"]
    medians: dict[str, dict[str, float]] = {}
    for result in run["results"]:
        values = {m: result[m]["median"] for m in TIMING_METRICS if result[m] is not None}
        if result["peak_memory_mb"] is not None:
            values["peak_memory_mb"] = result["peak_memory_mb"]
        if (result["throughput"] or {}).get("images_per_s") is not None:
            values["images_per_s"] = result["throughput"]["images_per_s"]
        medians["/".join(result_key(result))] = values
    return {
        "created": run["created"],
        "git_commit": env.get("git_commit"),
        "kind": run["kind"],
        "device": f"{env.get('device')} ({env.get('device_name')})",
        "medians": medians,
    }


def read_history(path: str | os.PathLike) -> list[dict]:
    """The run summaries of a history file, oldest first (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark history not found: {path}")
    history = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{number}: invalid JSON ({e})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("medians"), dict):
            raise ValueError(f"{path}:{number}: expected a run summary with 'medians'")
        history.append(entry)
    return history


def append_history(run: dict, path: str | os.PathLike) -> Path:
    """Append ``run``'s summary as one line to the JSONL file ``path`` (created if missing)."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    write_text_atomic(path, old + json.dumps(run_summary(run), sort_keys=True) + "\n")
    return path


def trend_path(history_path: str | os.PathLike) -> Path:
    """``<dir>/<history stem>_trend.png``."""
    history_path = Path(history_path)
    return history_path.with_name(f"{history_path.stem}_trend.png")


def plot_trend(
    history: list[dict], png_path: str | os.PathLike, metric: str = "forward_ms"
) -> Path:
    """Medians of ``metric`` over the runs of ``history``, one line per component/impl/case,
    log-y; written atomically as a PNG. Runs without the metric leave gaps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = sorted({k for entry in history for k, v in entry["medians"].items() if metric in v})
    fig = Figure(figsize=(9, 5), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for key in keys:
        xs, ys = [], []
        for i, entry in enumerate(history):
            value = entry["medians"].get(key, {}).get(metric)
            if value is not None and value > 0:
                xs.append(i)
                ys.append(value)
        ax.plot(xs, ys, marker="o", label=key)
    if keys:
        ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, f"no {metric} in the history", ha="center", va="center")
    labels = [
        f"{str(e.get('created', ''))[:10]}\n{str(e.get('git_commit') or '')[:7]}" for e in history
    ]
    ax.set_xticks(range(len(history)), labels, fontsize=7)
    ax.set_xlabel("run (date, commit)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} median over {len(history)} run(s)")
    ax.grid(True, which="both", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    png_path = Path(png_path)
    write_bytes_atomic(png_path, buf.getvalue())
    return png_path
