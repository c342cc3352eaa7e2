"""The plots of the benchmark report, each returned as a base64 PNG (or None when the runs lack
the fields it needs). Drawn on matplotlib ``Figure`` objects, no pyplot global state."""

from __future__ import annotations

import base64
import io
import re

from visdet.bench.schema import TIMING_METRICS

DPI = 100
BATCH_METRICS = (*TIMING_METRICS, "images_per_s")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _colour(i: int) -> str:
    return f"C{i % 10}"


def value(result: dict, metric: str) -> float | None:
    """Median of a timing metric, or ``throughput["images_per_s"]``; None when absent."""
    if metric == "images_per_s":
        return (result.get("throughput") or {}).get("images_per_s")
    stats = result.get(metric)
    return None if stats is None else stats["median"]


def label(result: dict) -> str:
    return f"{result['component']} [{result['impl']}] {result['case']}"


def plot_time_by_component(runs: list[dict], names: list[str]) -> str | None:
    """Horizontal bars of median time per case, one panel per timing metric, one colour per
    run, log-x."""
    metrics = [
        m for m in TIMING_METRICS if any(value(r, m) for run in runs for r in run["results"])
    ]
    if not metrics:
        return None
    labels = list(dict.fromkeys(label(r) for run in runs for r in run["results"]))
    height = max(2.5, 0.8 + 0.18 * len(labels) * len(runs))
    fig = _figure(6 * len(metrics), height)
    axes = fig.subplots(1, len(metrics), squeeze=False, sharey=True)[0]
    bar = 0.8 / len(runs)
    for ax, metric in zip(axes, metrics):
        for i, (run, name) in enumerate(zip(runs, names)):
            points = {label(r): value(r, metric) for r in run["results"]}
            ys = [k + i * bar for k, lab in enumerate(labels) if points.get(lab)]
            xs = [points[lab] for lab in labels if points.get(lab)]
            ax.barh(ys, xs, height=bar, color=_colour(i), label=name)
        ax.set_xscale("log")
        ax.set_xlabel(f"{metric} median (ms, log)")
        ax.grid(True, axis="x", which="both", alpha=0.3)
    axes[0].set_yticks(
        [k + bar * (len(runs) - 1) / 2 for k in range(len(labels))], labels, fontsize=7
    )
    axes[0].invert_yaxis()
    if len(runs) > 1:
        axes[-1].legend(fontsize=8)
    return _png_base64(fig)


def _batch_series(runs: list[dict], names: list[str], metric: str) -> dict[str, list]:
    series: dict[tuple, dict[int, float]] = {}
    for i, run in enumerate(runs):
        for r in run["results"]:
            v = value(r, metric)
            if v and r.get("batch_size") is not None:
                # the same setting apart from the batch: the case without its "b<N>_" prefix
                setting = re.sub(r"^b\d+_?", "", str(r.get("case", "")))
                key = (i, names[i], r["component"], r["impl"], setting)
                series.setdefault(key, {})[int(r["batch_size"])] = v
    return {k: sorted(pts.items()) for k, pts in series.items() if len(pts) >= 2}


def plot_time_vs_batch(runs: list[dict], names: list[str]) -> str | None:
    """Median time (and images/s) vs batch size for every component measured at two or more
    batch sizes in the same setting (case minus its ``b<N>_`` prefix), one line each;
    log-log (images/s on a linear y)."""
    from matplotlib.ticker import NullLocator

    panels = {m: s for m in BATCH_METRICS if (s := _batch_series(runs, names, m))}
    if not panels:
        return None
    fig = _figure(6 * len(panels), 4.5)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (metric, series) in zip(axes, panels.items()):
        for (i, name, component, impl, inp), points in series.items():
            xs, ys = zip(*points)
            tag = f"{component} [{impl}] {inp or ''}" + (f" ({name})" if len(runs) > 1 else "")
            ax.plot(xs, ys, marker="o", label=tag, linestyle="-" if i == 0 else "--")
        ax.set_xscale("log", base=2)
        sizes = sorted({x for points in series.values() for x, _ in points})
        ax.set_xticks(sizes, [str(x) for x in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        if metric != "images_per_s":
            ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(metric if metric == "images_per_s" else f"{metric} median (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    return _png_base64(fig)


def plot_flops_vs_time(runs: list[dict], names: list[str]) -> str | None:
    """Scatter of GFLOPs vs forward median (log-log), one colour per run, labelled by
    component."""
    found = False
    fig = _figure(8, 5.5)
    ax = fig.subplots()
    for i, (run, name) in enumerate(zip(runs, names)):
        pts = [
            (r["flops"] / 1e9, value(r, "forward_ms"), r["component"])
            for r in run["results"]
            if r.get("flops") and value(r, "forward_ms")
        ]
        if not pts:
            continue
        found = True
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=_colour(i), label=name)
        for x, y, component in pts:
            ax.annotate(component, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if not found:
        return None
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("GFLOPs (torch.utils.flop_counter, 2 per multiply-add)")
    ax.set_ylabel("forward_ms median (ms)")
    ax.grid(True, which="both", alpha=0.3)
    if len(runs) > 1:
        ax.legend(fontsize=8)
    return _png_base64(fig)


def plot_step_series(runs: list[dict], names: list[str]) -> str | None:
    """Per-step numeric lists found in results' ``extra`` (e.g. a training profiler's step
    times), one line per (run, component, key)."""
    from matplotlib.ticker import MaxNLocator

    series = []
    for run, name in zip(runs, names):
        for r in run["results"]:
            for key, values in (r.get("extra") or {}).items():
                if (
                    isinstance(values, list)
                    and len(values) >= 2
                    and all(isinstance(v, int | float) for v in values)
                ):
                    tag = f"{r['component']}: {key}" + (f" ({name})" if len(runs) > 1 else "")
                    series.append((tag, values))
    if not series:
        return None
    fig = _figure(9, 4.5)
    ax = fig.subplots()
    for tag, values in series:
        ax.plot(range(len(values)), values, label=tag, linewidth=1, marker=".")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("value (unit as named by the key)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _png_base64(fig)
