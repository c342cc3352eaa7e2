"""Compare two benchmark runs: ``visdet bench compare BASE.json NEW.json``.

Results are matched by ``result_key`` (component, impl, case). Per metric, ``ratio = new/base``.

- Timings (``TIMING_METRICS``, lower is better) compare medians. REGRESSED when the new median
  is slower by more than ``threshold`` (``new > base * (1 + threshold)``) AND lies above the
  base's noise band, the Tukey fence ``base.q3 + 1.5 * base.iqr``. "improved" is the mirror:
  ``new < base * (1 - threshold)`` AND ``new < base.q1 - 1.5 * base.iqr``.
- ``peak_memory_mb``: REGRESSED when ``new > base * (1 + threshold)`` and more than 1 MiB
  larger; improved symmetrically.
- ``images_per_s`` (``throughput``, higher is better): REGRESSED when
  ``new < base * (1 - threshold)``; improved when ``new > base * (1 + threshold)``.
- Cases (or metrics of a case) in only one run are listed as "added"/"removed", never as
  regressions.
- A NaN value on either side (a broken measurement) is flagged "NaN" and counts as a
  regression: a gate cannot pass on it.

Exit status: 0 nothing regressed, 1 something regressed (or NaN), 2 bad input or an output
that cannot be written (named on stderr).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from visdet.bench.schema import TIMING_METRICS, SchemaError, load_run, result_key
from visdet.io.atomic_write import write_text_atomic
from visdet.io.text_table import format_columns

STATUSES = ("ok", "REGRESSED", "NaN", "improved", "added", "removed")
MEMORY_SLACK_MB = 1.0
FENCE = 1.5  # Tukey's fence, in IQRs beyond the quartiles
INF = float("inf")
COLUMNS = ("component", "impl", "case", "metric", "base", "new", "ratio", "status")


@dataclass
class Row:
    component: str
    impl: str
    case: str
    metric: str
    base: float | None
    new: float | None
    ratio: float | None
    status: str


@dataclass
class Comparison:
    rows: list[Row]
    warnings: list[str] = field(default_factory=list)  # shown as WARNING lines
    notes: list[str] = field(default_factory=list)  # softer differences
    threshold: float = 0.10

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.status in ("REGRESSED", "NaN")]


def device_label(run: dict) -> str:
    env = run.get("environment", {})
    return f"{env.get('device')} ({env.get('device_name')})"


def _metric_values(result: dict) -> dict[str, tuple[float, dict | None]]:
    """{metric: (value, stats or None)} for every metric the result carries."""
    out: dict[str, tuple[float, dict | None]] = {}
    for metric in TIMING_METRICS:
        if result.get(metric) is not None:
            out[metric] = (float(result[metric]["median"]), result[metric])
    if result.get("peak_memory_mb") is not None:
        out["peak_memory_mb"] = (float(result["peak_memory_mb"]), None)
    throughput = result.get("throughput") or {}
    if throughput.get("images_per_s") is not None:
        out["images_per_s"] = (float(throughput["images_per_s"]), None)
    return out


def _status(metric: str, base: float, new: float, stats: dict | None, threshold: float) -> str:
    if metric in TIMING_METRICS:
        iqr = float(stats["iqr"])
        if new > base * (1 + threshold) and new > float(stats["q3"]) + FENCE * iqr:
            return "REGRESSED"
        if new < base * (1 - threshold) and new < float(stats["q1"]) - FENCE * iqr:
            return "improved"
    elif metric == "peak_memory_mb":
        if new > base * (1 + threshold) and new - base > MEMORY_SLACK_MB:
            return "REGRESSED"
        if new < base * (1 - threshold) and base - new > MEMORY_SLACK_MB:
            return "improved"
    else:  # images_per_s: higher is better
        if new < base * (1 - threshold):
            return "REGRESSED"
        if new > base * (1 + threshold):
            return "improved"
    return "ok"


def _by_key(run: dict, which: str) -> dict[tuple[str, str, str], dict]:
    out: dict[tuple[str, str, str], dict] = {}
    for result in run["results"]:
        key = result_key(result)
        if key in out:
            raise SchemaError(f"{which} run: duplicate result key {key}")
        out[key] = result
    return out


def _environment_messages(base: dict, new: dict) -> tuple[list[str], list[str]]:
    eb, en = base["environment"], new["environment"]
    warnings, notes = [], []
    if (eb.get("device"), eb.get("device_name")) != (en.get("device"), en.get("device_name")):
        warnings.append(
            f"WARNING: runs are from different devices: {device_label(base)} vs "
            f"{device_label(new)}; ratios compare hardware, not code"
        )
    for key, what in (("torch", "torch versions"), ("threads", "thread counts")):
        if eb.get(key) != en.get(key):
            notes.append(f"note: {what} differ: {eb.get(key)} vs {en.get(key)}")
    if base["kind"] != new["kind"]:
        notes.append(f"note: comparing a {base['kind']!r} run with a {new['kind']!r} run")
    return warnings, notes


def compare_runs(base: dict, new: dict, threshold: float = 0.10) -> Comparison:
    """Rows for every (case, metric) of two checked runs (see the module docstring)."""
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    base_results, new_results = _by_key(base, "base"), _by_key(new, "new")
    rows: list[Row] = []
    for key in sorted(base_results.keys() | new_results.keys()):
        b = _metric_values(base_results[key]) if key in base_results else None
        n = _metric_values(new_results[key]) if key in new_results else None
        if b is None or n is None:
            status, only = ("added", n) if b is None else ("removed", b)
            for metric, (value, _) in (only or {"-": (None, None)}).items():
                side = (None, value) if status == "added" else (value, None)
                rows.append(Row(*key, metric, *side, None, status))
            continue
        for metric in [*b, *(m for m in n if m not in b)]:
            if metric not in b or metric not in n:  # measured on one side only
                status = "added" if metric in n else "removed"
                side = (None, n[metric][0]) if metric in n else (b[metric][0], None)
                rows.append(Row(*key, metric, *side, None, status))
                continue
            (bv, stats), (nv, _) = b[metric], n[metric]
            if math.isnan(bv) or math.isnan(nv):
                rows.append(Row(*key, metric, bv, nv, None, "NaN"))
                continue
            ratio = nv / bv if bv else (1.0 if nv == bv else INF)
            rows.append(Row(*key, metric, bv, nv, ratio, _status(metric, bv, nv, stats, threshold)))
    warnings, notes = _environment_messages(base, new)
    return Comparison(rows, warnings, notes, threshold)


def fmt_number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == INF:
        return "inf"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _cells(row: Row) -> list[str]:
    ratio = "-" if row.ratio is None else "inf" if row.ratio == INF else f"{row.ratio:.2f}x"
    return [
        row.component,
        row.impl,
        row.case,
        row.metric,
        fmt_number(row.base),
        fmt_number(row.new),
        ratio,
        row.status,
    ]


def _summary(comparison: Comparison) -> str:
    counts = {s: sum(r.status == s for r in comparison.rows) for s in STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no results"


def _header(comparison: Comparison) -> list[str]:
    t = f"{comparison.threshold:.0%}"
    rule = (
        f"regression rule: times > {t} slower and above base q3 + 1.5 IQR; peak memory > {t} and "
        f"> {MEMORY_SLACK_MB:g} MiB larger; images/s > {t} lower"
    )
    return [*comparison.warnings, *comparison.notes, rule]


def format_table(comparison: Comparison) -> str:
    """Aligned text table; warnings and notes come first, a count summary last."""
    table = [list(COLUMNS)] + [_cells(r) for r in comparison.rows]
    lines = format_columns(table, right={4, 5, 6}, rule=True)
    return "\n".join([*_header(comparison), "", *lines, "", _summary(comparison)]) + "\n"


def md_escape(text: object) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def format_markdown(comparison: Comparison) -> str:
    """The same table as Markdown (warnings in bold), for a PR or closing note."""
    head = [
        f"**{md_escape(m)}**" if m.startswith("WARNING") else md_escape(m)
        for m in _header(comparison)
    ]
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(md_escape(c) for c in _cells(r)) + " |" for r in comparison.rows]
    return "\n\n".join(head) + "\n\n" + "\n".join(table) + f"\n\n{_summary(comparison)}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="visdet bench compare",
        description="Compare two visdet.bench results files; exit 1 when anything regressed.",
    )
    parser.add_argument("base", type=Path, help="baseline results JSON")
    parser.add_argument("new", type=Path, help="new results JSON")
    parser.add_argument("--threshold", type=float, default=0.10, help="relative slack (0.10)")
    parser.add_argument("--history", type=Path, help="JSONL history to append NEW to (+ plot)")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args(argv)
    if not args.threshold >= 0:
        parser.error(f"--threshold must be >= 0, got {args.threshold}")
    try:
        base, new = load_run(args.base), load_run(args.new)
        comparison = compare_runs(base, new, args.threshold)
    except (SchemaError, OSError) as e:
        print(f"visdet.bench.compare: error: {e}", file=sys.stderr)
        return 2
    print(format_table(comparison), end="")
    if args.markdown is not None:
        try:
            write_text_atomic(args.markdown, format_markdown(comparison))
        except OSError as e:
            print(f"visdet.bench.compare: error: --markdown {args.markdown}: {e}", file=sys.stderr)
            return 2
    if args.history is not None:
        from visdet.bench.history import append_history, plot_trend, read_history, trend_path

        try:
            append_history(new, args.history)
            png = plot_trend(read_history(args.history), trend_path(args.history))
        except (ValueError, OSError) as e:
            print(f"visdet.bench.compare: error: history {args.history}: {e}", file=sys.stderr)
            return 2
        print(f"history: {args.history} (trend plot {png})")
    return 1 if comparison.regressions else 0


if __name__ == "__main__":
    sys.exit(main())
