"""The evaluation report: one self-contained HTML file (inline CSS, every image embedded as a
base64 data URI, no scripts, no external requests).

Sections: headline stats, per-class table, TIDE error breakdown (a table with CSS bars),
the plots, the error gallery (entries of ``visdet.analysis.gallery.gallery_entries``) and
notes. Every string that comes from data (class names, file names, captions, notes, the
title) is HTML-escaped.
"""

from __future__ import annotations

import base64
import numbers
import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

from visdet.analysis.per_class_table import check_per_class, format_metric
from visdet.io.atomic_write import write_text_atomic

STATS = {  # key -> what it measures (COCOeval's summary lines)
    "AP": "AP, IoU 0.50:0.95, all areas, 100 dets",
    "AP50": "AP, IoU 0.50",
    "AP75": "AP, IoU 0.75",
    "APs": "AP, small objects (area < 32²)",
    "APm": "AP, medium objects (32² to 96²)",
    "APl": "AP, large objects (area > 96²)",
    "AR1": "AR, 1 detection per image",
    "AR10": "AR, 10 detections per image",
    "AR100": "AR, 100 detections per image",
    "ARs": "AR, small objects",
    "ARm": "AR, medium objects",
    "ARl": "AR, large objects",
}
TIDE_ERRORS = {
    "cls": "classification: right box, wrong class",
    "loc": "localisation: right class, box not tight enough",
    "both": "both: wrong class and box not tight enough",
    "dupe": "duplicate: a second detection of a found object",
    "bkg": "background: a detection of nothing",
    "miss": "missed: an object no detection found",
}
GALLERY_KEYS = ("file_name", "errors", "gt_image", "pred_image")
IMAGE_MIMES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:middle}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#d9534f;height:12px;display:inline-block}
figure{margin:.5em 0 1.5em}img{max-width:100%;border:1px solid #ddd}
.pair{display:flex;gap:12px;flex-wrap:wrap}.pair figure{margin:0}
figcaption{font-size:13px;color:#555}.note{color:#555}"""
BAR_PX = 240


def write_report_html(
    path: str | os.PathLike,
    title: str,
    stats: Mapping[str, float],
    per_class: Sequence[dict],
    tide: Mapping | None,
    plots: Mapping[str, str | os.PathLike],
    gallery: Sequence[dict] | None,
    notes: Sequence[str] = (),
    more_results: Mapping[str, tuple[Mapping, Sequence[dict], Mapping | None]] | None = None,
) -> None:
    """Write the report to ``path`` atomically.

    stats: the headline numbers (keys as ``STATS``, others listed after them; -1 = absent);
    per_class: rows as ``visdet.analysis.per_class_table``; tide: ``{"AP", "dAP": {type:
    value}, "counts": {type: n}, ...}`` or None (section left out); plots: caption -> PNG or
    JPEG file, embedded in order; gallery: entries of ``gallery_entries`` or None (section
    left out); notes: lines shown at the end; more_results: heading -> (stats, per_class,
    tide) of another evaluation of the same detections (instance masks beside boxes), shown
    after the first's, each under its heading.
    """
    sections = {"": (stats, per_class, tide), **(more_results or {})}
    body = [f"<h1>{escape(title)}</h1>"]
    for heading, (sec_stats, sec_per_class, sec_tide) in sections.items():
        check_per_class(sec_per_class)
        of = f" — {escape(heading)}" if heading else ""
        body += [f"<h2>Summary{of}</h2>", _stats_table(sec_stats)]
        body += [f"<h2>Per class{of}</h2>", _per_class_table(sec_per_class)]
        if sec_tide is not None:
            body += [f"<h2>Error breakdown (TIDE){of}</h2>", _tide_table(sec_tide)]
    for caption, plot_path in plots.items():
        body.append(f"<h2>{escape(str(caption))}</h2>")
        body.append(_figure(_data_uri(Path(plot_path), f"plots[{caption!r}]"), str(caption)))
    if gallery is not None:
        body += ["<h2>Images with the most errors</h2>", _gallery(gallery)]
    if notes:
        body.append("<h2>Notes</h2><ul>")
        body += [f'<li class="note">{escape(str(n))}</li>' for n in notes]
        body.append("</ul>")
    page = "\n".join(
        ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         f"<title>{escape(title)}</title><style>{CSS}</style></head><body>", *body,
         "</body></html>", ""]
    )  # fmt: skip
    write_text_atomic(path, page)


def _number_cell(text: str) -> str:
    return f'<td class="num">{escape(text)}</td>'


def _stats_table(stats: Mapping[str, float]) -> str:
    keys = [k for k in STATS if k in stats] + [k for k in stats if k not in STATS]
    rows = ["<table><tr><th>metric</th><th>value</th><th>what it measures</th></tr>"]
    for key in keys:
        value = stats[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"stats[{key!r}]: expected a number, got {value!r}")
        rows.append(
            f"<tr><td>{escape(str(key))}</td>{_number_cell(format_metric(value))}"
            f"<td>{escape(_stat_meaning(str(key)))}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _stat_meaning(key: str) -> str:
    if key in STATS:
        return STATS[key]
    for prefix, what in (("AP_", "AP"), ("AR_", "AR, 100 detections")):
        if key.startswith(prefix):
            return f"{what}, area range {key[len(prefix) :]}"
    return ""


def _per_class_table(per_class: Sequence[dict]) -> str:
    if not per_class:
        return '<p class="note">No classes.</p>'
    head = "".join(f"<th>{c}</th>" for c in ("id", "class", "AP", "AP50", "AR100", "gt", "dets"))
    rows = [f"<table><tr>{head}</tr>"]
    for row in per_class:
        cells = [_number_cell(str(int(row["category_id"]))), f"<td>{escape(str(row['name']))}</td>"]
        cells += [_number_cell(format_metric(row[m])) for m in ("AP", "AP50", "AR100")]
        cells += [_number_cell(str(int(row[c]))) for c in ("num_gt", "num_det")]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _tide_table(tide: Mapping) -> str:
    for key in ("dAP", "counts"):
        if not isinstance(tide.get(key), Mapping):
            raise ValueError(f"tide[{key!r}]: expected a dict of error type -> value")
    dap, counts = tide["dAP"], tide["counts"]
    types = [t for t in TIDE_ERRORS if t in dap] + [t for t in dap if t not in TIDE_ERRORS]
    for t in types:
        if isinstance(dap[t], bool) or not isinstance(dap[t], numbers.Real):
            raise TypeError(f"tide['dAP'][{t!r}]: expected a number, got {dap[t]!r}")
    top = max([float(dap[t]) for t in types if dap[t] == dap[t]] + [0.0])  # NaN left out
    parts = []
    if "AP" in tide:
        parts.append(f"<p>AP as TIDE measures it: {escape(format_metric(float(tide['AP'])))}</p>")
    parts.append(
        "<table><tr><th>error type</th><th>dAP (AP gained if fixed)</th><th></th>"
        "<th>count</th><th>meaning</th></tr>"
    )
    for t in types:
        value = float(dap[t])
        width = round(BAR_PX * value / top) if top > 0 and value > 0 else 0
        count = counts.get(t, "-")
        parts.append(
            f"<tr><td>{escape(str(t))}</td>{_number_cell(format_metric(value))}"
            f'<td style="width:{BAR_PX}px"><span class="bar" style="width:{width}px"></span></td>'
            f"{_number_cell(str(count))}<td>{escape(TIDE_ERRORS.get(t, ''))}</td></tr>"
        )
    parts.append("</table>")
    return "\n".join(parts)


def _data_uri(path: Path, name: str) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{name}: no image file {path}")
    data = path.read_bytes()
    return _bytes_uri(data, _mime(data, f"{name} ({path})"))


def _mime(data: bytes, name: str) -> str:
    for magic, mime in IMAGE_MIMES.items():
        if data.startswith(magic):
            return mime
    raise ValueError(f"{name}: expected a PNG or JPEG image")


def _bytes_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(uri: str, caption: str) -> str:
    text = escape(caption)
    return f'<figure><img src="{uri}" alt="{text}"><figcaption>{text}</figcaption></figure>'


def _gallery(gallery: Sequence[dict]) -> str:
    if not gallery:
        return '<p class="note">No image has an error.</p>'
    parts = []
    for i, entry in enumerate(gallery):
        missing = [k for k in GALLERY_KEYS if k not in entry]
        if missing:
            raise ValueError(f"gallery[{i}]: missing key(s) {missing} (expected {GALLERY_KEYS})")
        name = str(entry["file_name"])
        panels = []
        for key, label in (("gt_image", "ground truth"), ("pred_image", "predictions")):
            data = entry[key]
            if not isinstance(data, bytes):
                raise TypeError(f"gallery[{i}][{key!r}]: expected encoded image bytes")
            uri = _bytes_uri(data, _mime(data, f"gallery[{i}][{key!r}]"))
            count = entry.get("num_gt" if key == "gt_image" else "num_det")
            panels.append(_figure(uri, label if count is None else f"{label} ({int(count)})"))
        errors = int(entry["errors"])
        parts.append(
            f"<h3>{escape(name)}: {errors} error{'s' if errors != 1 else ''}</h3>"
            f'<div class="pair">{"".join(panels)}</div>'
        )
    return "\n".join(parts)
