"""Per-class evaluation results as a CSV file and as an aligned text table.

A row is a dict ``{"category_id", "name", "AP", "AP50", "AR100", "num_gt", "num_det"}``
(the ``per_class`` list of the COCO evaluation); a metric of -1 means "absent" (a class
without ground truth).
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
from collections.abc import Sequence

from visdet.io.atomic_write import write_text_atomic
from visdet.io.text_table import format_columns

COLUMNS = ("category_id", "name", "AP", "AP50", "AR100", "num_gt", "num_det")
METRICS = ("AP", "AP50", "AR100")
COUNTS = ("category_id", "num_gt", "num_det")


def check_per_class(per_class: Sequence[dict]) -> None:
    """Raise ValueError naming the row and key when a row lacks one of ``COLUMNS``, or
    TypeError when a metric is not a number or a count not an int."""
    for i, row in enumerate(per_class):
        if not isinstance(row, dict):
            raise TypeError(f"per_class[{i}]: expected a dict, got {type(row).__name__}")
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ValueError(f"per_class[{i}]: missing key(s) {missing} (expected {list(COLUMNS)})")
        for key in METRICS:
            if isinstance(row[key], bool) or not isinstance(row[key], numbers.Real):
                raise TypeError(f"per_class[{i}][{key!r}]: expected a number, got {row[key]!r}")
        for key in COUNTS:
            if not _is_int(row[key]):
                raise TypeError(f"per_class[{i}][{key!r}]: expected an int, got {row[key]!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_absent(value: float) -> bool:
    return value == -1


def write_per_class_csv(per_class: Sequence[dict], path: str | os.PathLike) -> None:
    """CSV with the header ``category_id,name,AP,AP50,AR100,num_gt,num_det`` and one row per
    class in the given order. Metrics are written with 6 decimals, except -1 (absent), which
    is written as ``-1``; counts as integers. Written atomically."""
    check_per_class(per_class)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in per_class:
        metrics = ["-1" if _is_absent(row[m]) else f"{float(row[m]):.6f}" for m in METRICS]
        writer.writerow(
            [int(row["category_id"]), str(row["name"]), *metrics,
             int(row["num_gt"]), int(row["num_det"])]
        )  # fmt: skip
    write_text_atomic(path, buf.getvalue())


def format_metric(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; "n/a" for -1 (absent) and "nan" for NaN."""
    if _is_absent(value):
        return "n/a"
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def format_per_class_table(per_class: Sequence[dict]) -> str:
    """A fixed-width text table (no trailing newline): columns class, AP, AP50, AR100, gt,
    dets, numbers right-aligned, a dashed rule under the header, "n/a" for -1."""
    check_per_class(per_class)
    rows = [["class", "AP", "AP50", "AR100", "gt", "dets"]]
    for row in per_class:
        rows.append(
            [str(row["name"]), *(format_metric(row[m]) for m in METRICS),
             str(int(row["num_gt"])), str(int(row["num_det"]))]
        )  # fmt: skip
    return "\n".join(format_columns(rows, right=range(1, 6), rule=True))
