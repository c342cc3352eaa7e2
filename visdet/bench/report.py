"""A benchmark report: ``visdet bench report RUN.json [RUN2.json ...] -o report.html``.

Writes one self-contained HTML page (inline CSS, plots as base64 PNGs, no external links or
scripts) and a Markdown summary beside it (same stem, ``.md``) with the same tables. The page
is built as a list of blocks, rendered once as HTML and once as Markdown.
"""

from __future__ import annotations

import argparse
import html
import json
import statistics
import sys
from pathlib import Path

from visdet.bench.compare import device_label, fmt_number, md_escape
from visdet.bench.report_plots import (
    plot_flops_vs_time,
    plot_step_series,
    plot_time_by_component,
    plot_time_vs_batch,
)
from visdet.bench.schema import FLOPS_UNIT, SchemaError, load_run
from visdet.io.atomic_write import write_text_atomic

ENV_FIELDS = ("torch", "python", "platform", "device", "device_name", "threads", "cpu_count",
              "git_commit")  # fmt: skip
RESULT_COLUMNS = (
    *("component", "impl", "case", "batch", "input", "params", "GFLOPs", "GMACs"),
    *("forward ms (median ± IQR)", "fwd+bwd ms (median ± IQR)", "peak MB", "images/s", "extra"),
)
PLOTS = (  # (title, function, sentence shown when the runs lack its fields, or None to skip)
    ("Median time by component", plot_time_by_component, "No result has a timing; the "
     "time-by-component plot is omitted."),
    ("Time vs batch size", plot_time_vs_batch, "No component was measured at several batch "
     "sizes; the time-vs-batch plot is omitted."),
    ("FLOPs vs forward time", plot_flops_vs_time, "No result has both FLOPs and a forward "
     "time; the FLOPs-vs-time plot is omitted."),
    ("Per-step series (extra)", plot_step_series, None),
)  # fmt: skip
CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fff3cd;border:1px solid #e0b000;padding:.5em 1em;font-weight:bold}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}.note{color:#555}"""


def _stats(stats: dict | None) -> str:
    if stats is None:
        return "-"
    return f"{fmt_number(stats['median'])} ± {fmt_number(stats['iqr'])} (n={stats['repeats']})"


def _extra(extra: object, limit: int = 120) -> str:
    if not isinstance(extra, dict) or not extra:
        return "-"
    parts = []
    for key, value in extra.items():
        if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
            parts.append(
                f"{key}: {len(value)} values, median {fmt_number(statistics.median(value))}"
            )
        elif isinstance(value, int | float) and not isinstance(value, bool):
            parts.append(f"{key}={fmt_number(value)}")
        else:
            parts.append(f"{key}={json.dumps(value, default=str)}")
    text = "; ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _throughput(throughput: dict | None) -> str:
    if not throughput:
        return "-"
    main = fmt_number(throughput.get("images_per_s"))
    others = [
        f"{k}={fmt_number(v) if isinstance(v, int | float) else v}"
        for k, v in throughput.items()
        if k != "images_per_s"
    ]
    return main + (f" ({', '.join(others)})" if others else "")


def _giga(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e9:.4g}"


def result_cells(r: dict) -> list[str]:
    params = "-" if r["params"] is None else f"{r['params'] / 1e6:.3g} M"
    peak = fmt_number(r["peak_memory_mb"])
    batch = "-" if r["batch_size"] is None else str(r["batch_size"])
    cells = [r["component"], r["impl"], r["case"], batch, str(r["input"] or "-"), params]
    cells += [_giga(r["flops"]), _giga(r["macs"]), _stats(r["forward_ms"])]
    cells += [_stats(r["forward_backward_ms"]), peak, _throughput(r["throughput"])]
    return [*cells, _extra(r["extra"])]


def _groups(run: dict) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for r in run["results"]:
        groups.setdefault(str(r.get("group") or "(no group)"), []).append(r)
    return groups


def device_warning(runs: list[dict], names: list[str]) -> str | None:
    labels = [device_label(run) for run in runs]
    if len(set(labels)) <= 1:
        return None
    each = ", ".join(f"{n}: {lab}" for n, lab in zip(names, labels))
    return f"WARNING: runs are from different devices ({each}); timings compare hardware, not code"


def _blocks(runs: list[dict], names: list[str]) -> list[tuple]:
    blocks: list[tuple] = [("h1", "visdet benchmark report: " + ", ".join(names))]
    warning = device_warning(runs, names)
    if warning:
        blocks.append(("warn", warning))
    blocks.append(("h2", "Environment"))
    env_rows = [["kind", *(r["kind"] for r in runs)], ["created", *(r["created"] for r in runs)]]
    env_rows += [[f, *(str(r["environment"].get(f)) for r in runs)] for f in ENV_FIELDS]
    env_rows.append(["settings", *(json.dumps(r["settings"], default=str) for r in runs)])
    blocks.append(("table", ["", *names], env_rows))
    blocks.append(("h2", "Results"))
    blocks.append(
        (
            "p",
            f"GFLOPs: 1e9 {FLOPS_UNIT}; GMACs = GFLOPs / 2 (multiply-adds). Times "
            "in milliseconds, median ± interquartile range over n repeats.",
        )
    )
    for run, name in zip(runs, names):
        blocks.append(("h3", f"{name} ({run['kind']}, {len(run['results'])} results)"))
        if not run["results"]:
            blocks.append(("p", "No results in this run."))
        for group, results in _groups(run).items():
            blocks.append(("h4", f"group: {group}"))
            blocks.append(("table", list(RESULT_COLUMNS), [result_cells(r) for r in results]))
    blocks.append(("h2", "Plots"))
    for title, plot, missing in PLOTS:
        png = plot(runs, names)
        if png is None and missing is None:
            continue
        blocks.append(("h3", title))
        blocks.append(("img", title, png) if png else ("p", missing))
    return blocks


def _numeric(cell: str) -> bool:
    return cell[:1].isdigit() or cell == "-"


def render_html(blocks: list[tuple], title: str) -> str:
    e = html.escape
    body = []
    for kind, *args in blocks:
        if kind in ("h1", "h2", "h3", "h4"):
            body.append(f"<{kind}>{e(args[0])}</{kind}>")
        elif kind == "p":
            body.append(f'<p class="note">{e(args[0])}</p>')
        elif kind == "warn":
            body.append(f'<p class="warn">{e(args[0])}</p>')
        elif kind == "table":
            head = "".join(f"<th>{e(h)}</th>" for h in args[0])
            rows = "".join(
                "<tr>"
                + "".join(
                    f'<td class="num">{e(c)}</td>' if _numeric(c) else f"<td>{e(c)}</td>"
                    for c in row
                )
                + "</tr>\n"
                for row in args[1]
            )
            body.append(f"<table><tr>{head}</tr>\n{rows}</table>")
        elif kind == "img":
            body.append(f'<img alt="{e(args[0])}" src="data:image/png;base64,{args[1]}">')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def render_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *args in blocks:
        if kind.startswith("h"):
            out.append("#" * int(kind[1]) + " " + md_escape(args[0]))
        elif kind == "p":
            out.append(md_escape(args[0]))
        elif kind == "warn":
            out.append(f"**{md_escape(args[0])}**")
        elif kind == "table":
            lines = [
                "| " + " | ".join(md_escape(h) for h in args[0]) + " |",
                "|" + "---|" * len(args[0]),
            ]
            lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in args[1]]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"_(plot in the HTML report: {md_escape(args[0])})_")
    return "\n\n".join(out) + "\n"


def build_report(runs: list[dict], names: list[str]) -> tuple[str, str]:
    """(html, markdown) of checked runs; ``names`` label them (one per run)."""
    if not runs or len(runs) != len(names):
        raise ValueError(
            f"need one name per run and at least one run, got {len(runs)} runs "
            f"and {len(names)} names"
        )
    blocks = _blocks(runs, names)
    return render_html(blocks, blocks[0][1]), render_markdown(blocks)


def _names(paths: list[Path]) -> list[str]:
    names = [p.stem for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="visdet bench report",
        description="HTML report (+ Markdown summary) of one or more visdet.bench results files.",
    )
    parser.add_argument("runs", type=Path, nargs="+", help="results JSON file(s)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("report.html"),
        help="HTML path; the Markdown goes beside it as <stem>.md",
    )
    args = parser.parse_args(argv)
    if args.output.suffix == ".md":
        parser.error(f"-o names the HTML page; {args.output} would collide with the Markdown")
    try:
        runs = [load_run(p) for p in args.runs]
    except (SchemaError, OSError) as e:
        print(f"visdet.bench.report: error: {e}", file=sys.stderr)
        return 2
    page, summary = build_report(runs, _names(args.runs))
    md_path = args.output.with_suffix(".md")
    write_text_atomic(args.output, page)
    write_text_atomic(md_path, summary)
    print(f"wrote {args.output} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
