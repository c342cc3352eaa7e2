"""Write a Conversion (visdet.migrate.mmdet_to_visdet) as a visdet experiment YAML: the
values, then every MMDetection setting that was not carried over, with its reason, as
comments the user reads before training."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from visdet.io.atomic_write import write_text_atomic
from visdet.migrate.mmdet_to_visdet import Conversion


def experiment_yaml(conversion: Conversion, source: str) -> str:
    body = {"defaults": [*conversion.defaults, "_self_"], **conversion.values}
    lines = [
        "# @package _global_",
        f"# Converted by `visdet convert-config` from {source}",
        f"# (MMDetection {conversion.version} config; family {conversion.family}, preset "
        f"{conversion.preset}). Read the list at the end: what was not carried over, and why.",
        OmegaConf.to_yaml(OmegaConf.create(body)).rstrip(),
        "",
        f"# Not carried over ({len(conversion.dropped)}):",
    ]
    lines += [f"#   {key}: {reason}" for key, reason in conversion.dropped] or ["#   nothing"]
    return "\n".join(lines) + "\n"


def write_experiment(conversion: Conversion, source: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, experiment_yaml(conversion, source))
    return path
