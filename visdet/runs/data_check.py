"""The run behind ``visdet data check`` (conf/data_check.yaml): check every split of a dataset
(visdet.data.check) and write ``data_report.json``, ``data_report.md`` and PNG histograms into
the run directory.

    visdet data check data=<group> [data.source.root=DIR ...]     every split of the source
    visdet data check annotations=GT.json images=DIR             one COCO file

Exits with status 1 naming the first errors when any split has an error (a problem that would
break or silently damage training), 0 otherwise.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from visdet.config.validate import validate_config
from visdet.data.check import ERROR, WARNING, check_dataset, severity_counts
from visdet.data.remote import RemoteCache, check_protocol, is_url, open_file, open_folder
from visdet.io.atomic_write import write_bytes_atomic, write_text_atomic
from visdet.io.strict_json import dumps_strict, read_json_file
from visdet.runs.job import exit_with

log = logging.getLogger(__name__)

TOP_LEVEL = {"data", "annotations", "images", "workers", "paths", "hydra", "task_name"}
SHOWN_ERRORS = 3  # errors named in the exit line
PLOTS = ("objects_per_class", "box_sizes", "aspect_ratios", "objects_per_image", "image_sizes")


def dataset_splits(cfg: DictConfig) -> dict[str, tuple[Path, Path]]:
    """``{split: (annotation file, image folder)}`` from ``annotations=``/``images=`` (one
    split named after the file) or from every split of ``data.source``."""
    has_data, has_file = cfg.get("data") is not None, cfg.get("annotations") is not None
    if has_data == has_file:
        raise ValueError(
            "give either data=<group> (every split of its source, e.g. data=coco "
            "data.source.root=DIR) or annotations=GT.json images=DIR"
        )
    if has_file:
        if cfg.get("images") is None:
            raise ValueError("annotations= needs images=DIR (the folder its file_names are in)")
        return {_stem(str(cfg.annotations)): _file_split(str(cfg.annotations), str(cfg.images))}
    if "source" not in cfg.data:
        raise ValueError("data: expected a dataset config with a source (data=coco, ...)")
    source = instantiate(cfg.data.source)
    source.prepare()
    return {name: (s.ann_file, s.image_dir) for name, s in source.splits().items()}


def _stem(location: str) -> str:
    return Path(urlparse(location).path if is_url(location) else location).stem


def _file_split(ann: str, images: str):
    """``annotations=`` / ``images=`` as local paths, or fsspec URLs fetched through the
    remote cache ($VISDET_REMOTE_CACHE or ~/.cache/visdet/remote; visdet.data.remote)."""
    if is_url(ann):
        check_protocol(ann, "annotations")
    if is_url(images):
        check_protocol(images, "images")
    cache = RemoteCache(None)
    return open_file(ann, cache, "annotation file"), open_folder(images, cache, "image")


def run_data_check(cfg: DictConfig) -> dict:
    """Check as configured, write the report; returns ``{split: report}``. Exits 1 (one line
    naming the first errors) when there is any error."""
    validate_config(cfg, top_level=TOP_LEVEL, required=())
    out = Path(cfg.paths.output_dir)
    reports = {}
    for split, (ann_file, image_dir) in dataset_splits(cfg).items():
        coco = read_json_file(ann_file, f"annotation file of split {split}")
        reports[split] = check_dataset(coco, image_dir, split, int(cfg.get("workers", 4)))
        reports[split]["annotation_file"] = str(ann_file)
    write_data_report(reports, out)
    totals = {ERROR: 0, WARNING: 0}
    for report in reports.values():
        for k, v in severity_counts(report).items():
            totals[k] += v
    images = sum(r["counts"]["images"] for r in reports.values())
    boxes = sum(r["counts"]["boxes"] for r in reports.values())
    print(
        f"data check: splits {', '.join(reports)}; {images} images, {boxes} boxes; "
        f"{totals[ERROR]} errors, {totals[WARNING]} warnings; report: {out / 'data_report.md'}",
        flush=True,
    )
    if totals[ERROR]:
        exit_with(f"data check failed: {first_errors(reports)}")
    return reports


def first_errors(reports: dict) -> str:
    """The first SHOWN_ERRORS error kinds over the splits: ``split: kind (count), e.g. ...``."""
    shown = []
    for split, report in reports.items():
        for kind, p in report["problems"].items():
            if p["severity"] == ERROR:
                shown.append(f"{split}: {kind} ({p['count']}), e.g. {p['examples'][0]}")
    more = f"; and {len(shown) - SHOWN_ERRORS} more kinds" if len(shown) > SHOWN_ERRORS else ""
    return "; ".join(shown[:SHOWN_ERRORS]) + more + " (see data_report.md)"


def write_data_report(reports: dict[str, dict], out_dir: str | Path) -> None:
    """``data_report.json`` (the reports without their distributions), ``data_report.md`` and
    one PNG per name in PLOTS into ``out_dir``; every write atomic."""
    out = Path(out_dir)
    plain = {s: {k: v for k, v in r.items() if k != "distributions"} for s, r in reports.items()}
    write_text_atomic(out / "data_report.json", dumps_strict(plain) + "\n")
    write_text_atomic(out / "data_report.md", report_markdown(reports))
    for name in PLOTS:
        write_bytes_atomic(out / f"{name}.png", _plot(name, reports))


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_markdown(reports: dict[str, dict]) -> str:
    """Per split: counts, boxes per class, and problems by severity with examples."""
    lines = ["# Data check", ""]
    lines += ["| split | images | boxes | images without labels | errors | warnings |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for split, r in reports.items():
        c, sev = r["counts"], severity_counts(r)
        lines.append(
            f"| {split} | {c['images']} | {c['boxes']} | {c['images_without_labels']} "
            f"| {sev[ERROR]} | {sev[WARNING]} |"
        )
    for split, r in reports.items():
        c = r["counts"]
        lines += [
            "",
            f"## {split}",
            "",
            f"Annotations: `{r.get('annotation_file', '?')}`, images: `{r['image_dir']}`.",
            "",
        ]
        sizes = c["box_sizes"]
        lines += [
            f"Box sizes (sqrt area): small < 32: {sizes['small']}, medium < 96: "
            f"{sizes['medium']}, large: {sizes['large']}.",
            "",
        ]
        lines += ["| class | boxes |", "|---|---:|"]
        lines += [f"| {_cell(name)} | {n} |" for name, n in c["per_class"].items()]
        for severity in (ERROR, WARNING):
            found = {k: p for k, p in r["problems"].items() if p["severity"] == severity}
            lines += ["", f"### {severity}s", ""]
            if not found:
                lines.append("none")
                continue
            lines += ["| problem | count | first examples |", "|---|---:|---|"]
            for kind, p in found.items():
                shown = "<br>".join(_cell(e) for e in p["examples"])
                lines.append(f"| {kind} | {p['count']} | {shown} |")
    return "\n".join(lines) + "\n"


def _plot(name: str, reports: dict[str, dict]) -> bytes:
    """PNG bytes of one histogram (each split its own colour)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    classes = list(next(iter(reports.values()))["counts"]["per_class"]) if reports else []
    tall = name == "objects_per_class" and len(classes) > 20  # one readable row per class
    height = 1.5 + 0.16 * len(classes) * max(len(reports), 1) ** 0.5 if tall else 5.0
    fig = Figure(figsize=(8, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    dist = {s: r["distributions"] for s, r in reports.items()}
    if name == "objects_per_class":
        width = 0.8 / max(len(reports), 1)
        for i, (split, r) in enumerate(reports.items()):
            counts = [r["counts"]["per_class"].get(c, 0) for c in classes]
            ax.barh(np.arange(len(classes)) + i * width, counts, height=width, label=split)
        ax.set_yticks(
            np.arange(len(classes)),
            classes,
            fontsize=8,
        )
        ax.invert_yaxis()
        ax.set_xlabel("boxes")
    elif name == "box_sizes":
        top = max([max(d["box_sqrt_area"], default=1.0) for d in dist.values()], default=1.0)
        bins = np.linspace(0.0, max(top, 100.0), 50)
        for split, d in dist.items():
            ax.hist(d["box_sqrt_area"], bins=bins, histtype="step", label=split)
        for bound in (32, 96):  # COCO's small / medium / large bounds
            ax.axvline(bound, color="grey", linestyle="--")
            ax.text(bound, 0.98, f" {bound}", transform=ax.get_xaxis_transform(), va="top")
        ax.set_xlabel("sqrt(box area) [px]")
    elif name == "aspect_ratios":
        bins = np.logspace(-2, 2, 41)
        for split, d in dist.items():
            ax.hist(np.clip(d["aspect_ratio"], 1e-2, 1e2), bins=bins, histtype="step", label=split)
        ax.set_xscale("log")
        ax.set_xlabel("aspect ratio w / h (log scale)")
    elif name == "objects_per_image":
        top = max([max(d["objects_per_image"], default=0) for d in dist.values()], default=0)
        bins = np.arange(-0.5, top + 1.5, 1.0)
        for split, d in dist.items():
            ax.hist(d["objects_per_image"], bins=bins, histtype="step", label=split)
        ax.set_xlabel("boxes per image")
    elif name == "image_sizes":
        for split, d in dist.items():
            wh = np.asarray(d["image_sizes"], dtype=np.float64).reshape(-1, 2)
            ax.scatter(wh[:, 0], wh[:, 1], s=8, alpha=0.5, label=split)
        ax.set_xlabel("width [px]")
        ax.set_ylabel("height [px]")
    else:
        raise ValueError(f"plot must be one of {', '.join(PLOTS)}, got {name!r}")
    if name != "image_sizes":
        ax.set_ylabel("count" if name != "objects_per_class" else "")
    ax.set_title(name.replace("_", " "))
    if reports:
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
