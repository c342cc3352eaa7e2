"""A Hydra callback that tabulates a sweep: one row per job (parameters -> metric).

After each job of a multirun it writes ``job_result.json`` into the job's directory (job
number, overrides, swept parameters, status, the value of ``optimized_metric``, the error
message of a failed job) and rewrites ``sweep_summary.csv`` and ``sweep_summary.md`` in the
sweep directory from the job records found there, so an interrupted sweep still has a
summary. At the end of the multirun it writes them once more and prints the table, the best
job marked. Works with any sweeper (basic, Optuna) because it reads only what each job wrote.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from visdet.io.atomic_write import write_text_atomic
from visdet.sweep.job_files import ENV_TRIAL, ERROR_FILE, PRUNED_FILE

log = logging.getLogger(__name__)

RESULT_FILE = "job_result.json"
SUMMARY_NAME = "sweep_summary"
MAX_ERROR = 100  # characters of the error message in the Markdown table (CSV: all of it)


class SweepSummary(Callback):
    """Record every job of a multirun and write ``sweep_summary.{csv,md}`` in the sweep dir.

    Args:
        fail_if_all_failed: at the end of a sweep in which every job failed, exit with
            status 1 (after writing the summary). A sweep with a completed or pruned job
            exits 0.
    """

    def __init__(self, fail_if_all_failed: bool = True) -> None:
        self.fail_if_all_failed = fail_if_all_failed
        self._swept: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._swept = swept_keys(config) + [
            str(k) for k in config.hydra.sweeper.get("search_space") or {}
        ]
        if keeps_study(config):
            return  # a resumed or shared Optuna study: its earlier trials belong to the table
        # a reused sweep dir: records of an earlier sweep would join this one's table
        for old in Path(config.hydra.sweep.dir).rglob(RESULT_FILE):
            old.unlink()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = job_return.hydra_cfg.hydra
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return
        job_dir = Path(hydra_cfg.runtime.output_dir)
        record = job_record(config, job_return, job_dir, self._swept + swept_keys(config))
        write_text_atomic(job_dir / RESULT_FILE, json.dumps(record, indent=2))
        write_summary(Path(hydra_cfg.sweep.dir), direction(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = write_summary(sweep_dir, direction(config))
        print(f"sweep summary ({sweep_dir / SUMMARY_NAME}.csv):", flush=True)
        print(markdown_table(records, direction(config)), flush=True)
        completed = sum(r["status"] in ("completed", "pruned") for r in records)
        if self.fail_if_all_failed and records and not completed:
            raise SystemExit(f"sweep failed: all {len(records)} jobs failed (see {sweep_dir})")


def keeps_study(config: DictConfig) -> bool:
    """Whether the sweeper is visdet's Optuna sweeper, whose study (and so its trials' records
    in the sweep dir) persists across runs of the same sweep."""
    return "visdet_optuna" in str(config.hydra.sweeper.get("_target_", ""))


def swept_keys(config: DictConfig) -> list[str]:
    """Keys a sweep varies: sweep overrides on the command line (``a=1,2``, ``b=range(...)``)
    and the keys of ``hydra.sweeper.params``."""
    keys = list(config.hydra.sweeper.get("params") or {})
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys += [o.get_key_element() for o in parsed if o.is_sweep_override()]
    return [k.lstrip("+~") for k in dict.fromkeys(keys)]


def split_override(override: str) -> tuple[str, str]:
    """``"+a.b=1"`` -> ``("a.b", "1")``; a deletion ``"~a"`` -> ``("a", "~")``."""
    key, sep, value = override.partition("=")
    if not sep and key.startswith("~"):
        value = "~"
    return key.lstrip("+~"), value


def job_record(
    config: DictConfig, job_return: JobReturn, job_dir: Path, swept: Sequence[str]
) -> dict:
    """What the summary lists about one finished job. In an Optuna sweep the job number is
    the trial number (unique across processes sharing the study)."""
    hydra_cfg = job_return.hydra_cfg.hydra
    overrides = list(job_return.overrides or [])
    values = dict(split_override(o) for o in overrides)
    error = None
    scores: list[float | None] = []
    names = config.get("optimized_metric", "value")
    names = [str(names)] if isinstance(names, str) else [str(n) for n in names]
    if job_return.status == JobStatus.COMPLETED:
        returned = job_return.return_value
        returned = returned if isinstance(returned, list | tuple) else [returned]
        scores = [_finite(v) for v in returned]
    else:  # an exception escaped the task function
        error = f"{type(job_return._return_value).__name__}: {job_return._return_value}"
    if (job_dir / ERROR_FILE).is_file():
        error = json.loads((job_dir / ERROR_FILE).read_text())["short_message"]
    elif (not scores or None in scores) and error is None and "optimized_metric" in config:
        error = f"{', '.join(names)} absent or nan"  # a tool without optimized_metric: nothing
    status = "failed" if error else "completed"
    if (job_dir / PRUNED_FILE).is_file():
        status = "pruned"
    trial = hydra_cfg.job.get("env_set", {}).get(ENV_TRIAL)
    return {
        "job": int(hydra_cfg.job.num if trial is None else trial),
        "status": status,
        "metric": names[0],
        "value": scores[0] if scores else None,
        "metrics": names,
        "values": scores if len(scores) == len(names) else [None] * len(names),
        "params": {k: values[k] for k in swept if k in values},
        "overrides": [o for o in overrides if not o.startswith("hydra.")],
        "output_dir": str(job_dir),
        "error": error,
    }


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def direction(config: DictConfig) -> str:
    """``maximize`` or ``minimize``: the sweeper's direction (Optuna), else maximize."""
    d = config.hydra.sweeper.get("direction", "maximize")
    if isinstance(d, Sequence) and not isinstance(d, str):
        d = d[0]  # multi-objective: the summary ranks by the first
    return str(getattr(d, "name", d)).split(".")[-1]


def read_records(sweep_dir: Path) -> list[dict]:
    """The ``job_result.json`` records under ``sweep_dir``, by job number."""
    records = [json.loads(p.read_text()) for p in sweep_dir.rglob(RESULT_FILE)]
    return sorted(records, key=lambda r: r["job"])


def best_job(records: Iterable[dict], direction: str = "maximize") -> int | None:
    """Number of the completed job with the best value (None when there is none)."""
    scored = [r for r in records if r["status"] == "completed" and r["value"] is not None]
    if not scored:
        return None
    pick = max if direction == "maximize" else min
    return pick(scored, key=lambda r: r["value"])["job"]


def table_rows(
    records: Sequence[dict], direction: str = "maximize", digits: int | None = 4
) -> list[list[str]]:
    """Header and one row per job: job, parameters..., metric, status, best mark, error.
    Metric values are rounded to ``digits`` (None: full precision)."""
    params = list(dict.fromkeys(k for r in records for k in r["params"]))
    varying = _varying_keys(records)
    params += [k for k in varying if k not in params]
    metrics = (records[0].get("metrics") or [records[0]["metric"]]) if records else ["value"]
    best = best_job(records, direction)
    rows = [["job", *params, *metrics, "status", "best", "error"]]
    for r in records:
        values = dict(split_override(o) for o in r["overrides"])
        scores = r.get("values") or [r["value"]]
        rows.append(
            [
                str(r["job"]),
                *[values.get(k, "") for k in params],
                *[_format_value(v, digits) for v in scores],
                r["status"],
                "*" if r["job"] == best else "",
                r["error"] or "",
            ]
        )
    return rows


def _format_value(value: float | None, digits: int | None) -> str:
    if value is None:
        return "nan"
    return repr(value) if digits is None else f"{value:.{digits}f}"


def _varying_keys(records: Sequence[dict]) -> list[str]:
    """Override keys whose value differs between jobs (a key missing in a job counts as a
    value of its own)."""
    jobs = [dict(split_override(o) for o in r["overrides"]) for r in records]
    keys = dict.fromkeys(k for values in jobs for k in values)
    return [k for k in keys if len({values.get(k) for values in jobs}) > 1]


def markdown_table(records: Sequence[dict], direction: str = "maximize") -> str:
    """The summary as an aligned Markdown table (readable as plain text too)."""
    if not records:
        return "(no jobs recorded)"
    rows = table_rows(records, direction)
    n_metrics = len(records[0].get("metrics") or [records[0]["metric"]])
    n_params = len(rows[0]) - 4 - n_metrics  # job, params..., metrics..., status, best, error
    for row in rows[1:]:
        row[1 : 1 + n_params] = [_short_number(v) for v in row[1 : 1 + n_params]]
        row[-1] = row[-1] if len(row[-1]) <= MAX_ERROR else row[-1][: MAX_ERROR - 3] + "..."
    rows = [[c.replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _short_number(value: str) -> str:
    """A float parameter with 4 significant digits (``0.006677511`` -> ``0.006678``)."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if any(c in value for c in ".eE") else value


def write_summary(sweep_dir: Path, direction: str = "maximize") -> list[dict]:
    """Write ``sweep_summary.csv`` and ``sweep_summary.md`` from the job records under
    ``sweep_dir``; returns the records."""
    records = read_records(sweep_dir)
    rows = table_rows(records, direction, digits=None)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*rows[0], "output_dir"])
    for row, r in zip(rows[1:], records):
        writer.writerow([*row, r["output_dir"]])
    write_text_atomic(sweep_dir / f"{SUMMARY_NAME}.csv", buffer.getvalue())
    best = best_job(records, direction)
    failed = sum(r["status"] == "failed" for r in records)
    pruned = sum(r["status"] == "pruned" for r in records)
    md = [
        f"# Sweep summary: {sweep_dir}",
        "",
        f"{len(records)} jobs, {failed} failed, {pruned} pruned; best ({direction}): "
        + ("none" if best is None else f"job {best}"),
        "",
        markdown_table(records, direction),
        "",
    ]
    write_text_atomic(sweep_dir / f"{SUMMARY_NAME}.md", "\n".join(md))
    return records
