"""Collect the runs of run_all.sh into tables (Markdown) and plots (PNG).

.venv/bin/python experiments/techniques/summarise.py [--fixed RUN_DIR_OF_MAKE_TRAIN]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
RUNS = HERE.parents[1] / "outputs" / "experiments"


def load(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    rows = list(csv.DictReader((run / "csv" / "version_0" / "metrics.csv").open()))
    val = [(int(r["epoch"]) + 1, float(r["val/mAP"])) for r in rows if r.get("val/mAP")]
    steps = [r for r in rows if r.get("train/loss")]
    return {"metrics": metrics, "val": val, "steps": len(steps)}


def row(name: str, run: dict) -> str:
    m = run["metrics"]
    step_s = m["time_s"] / max(1, m["global_step"])
    mem = m.get("peak_memory_mb", {}).get("process_rss")
    nan = float("nan")
    return (
        f"| {name} | {m['epochs']} | {m.get('val/mAP', nan):.3f} | "
        f"{m.get('val/mAP50', nan):.3f} | "
        f"{m['time_s']:.0f} | {step_s:.2f} | {m.get('trainable_params', 0):,} | "
        f"{'-' if mem is None else f'{mem:.0f}'} |"
    )


def plot(curves: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, pts in curves.items():
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mAP@[.5:.95]")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fixed", type=Path, help="run directory of the fixed-size `make train`")
    args = parser.parse_args()
    runs = {
        p.name: load(p)
        for p in sorted(RUNS.iterdir())
        if (p / "metrics.json").exists() and (p / "csv").exists()
    }
    if args.fixed:
        runs["fixed_8ep (make train)"] = load(args.fixed)
    header = (
        "| run | epochs | val mAP | mAP50 | wall s | s/step | trainable params "
        "| peak RSS MiB |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    print(header)
    for name, run in runs.items():
        print(row(name, run))
    lr = RUNS / "lr_finder"
    if (lr / "lr_finder.png").exists():
        shutil.copy(lr / "lr_finder.png", HERE / "lr_finder.png")
        shutil.copy(lr / "lr_finder.json", HERE / "lr_finder.json")
    groups = {
        "schedules.png": ("one-cycle vs warm-up + multistep", ["default_4ep", "one_cycle_4ep"]),
        "progressive.png": (
            "progressive resizing vs fixed size",
            ["progressive_8ep", "fixed_8ep (make train)"],
        ),
        "finetune.png": (
            "fine-tuning onto shifted shapes",
            ["finetune_full", "finetune_lora", "finetune_discriminative"],
        ),
    }
    for filename, (title, names) in groups.items():
        plot({n: runs[n]["val"] for n in names if n in runs}, HERE / filename, title)


if __name__ == "__main__":
    main()
