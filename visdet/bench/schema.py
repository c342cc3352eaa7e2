"""The benchmark results format (one JSON file per run), versioned.

```
{"schema": "visdet.bench", "schema_version": 1, "kind": "components" | "training",
 "created": "2026-11-21T09:30:00+00:00",
 "environment": {"torch", "python", "platform", "device", "device_name", "threads",
                 "cpu_count", "git_commit"},
 "settings": {...},                      # what was asked for (preset, repeats, sizes, ...)
 "results": [Result, ...]}
```

A Result is one measured case; ``key`` = (component, impl, case) identifies it across runs:

```
{"component": "backbone/resnet18", "group": "backbone", "impl": "visdet",
 "case": "b2_3x224x224", "batch_size": 2, "input": "3x224x224",
 "params": 11176512,
 "flops": 3.6e9, "macs": 1.8e9,          # torch.utils.flop_counter FLOPs (2 per multiply-add)
 "forward_ms":          {"median", "q1", "q3", "iqr", "repeats"} | null,
 "forward_backward_ms": {"median", "q1", "q3", "iqr", "repeats"} | null,
 "peak_memory_mb": 45.1 | null,
 "memory_kind": "cuda_allocator_peak" | "cpu_tensor_peak" | "cpu_process_rss" (callback),
 "throughput": {"images_per_s": 12.3, ...} | null,
 "extra": {...}}      # e.g. the core benchmark's "reference": {"ms", "ratio", "source"},
                      # "parts_ms": forward ms of the detector's parts
```
No host names are recorded.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from visdet.io.atomic_write import write_text_atomic

SCHEMA = "visdet.bench"
SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
KINDS = ("components", "training")
FLOPS_UNIT = "FLOP (torch.utils.flop_counter: 2 FLOPs per multiply-add)"
TIMING_METRICS = ("forward_ms", "forward_backward_ms")  # lower is better
RESULT_FIELDS = (
    "component", "group", "impl", "case", "batch_size", "input", "params", "flops", "macs",
    "forward_ms", "forward_backward_ms", "peak_memory_mb", "memory_kind", "throughput", "extra",
)  # fmt: skip
STAT_FIELDS = ("median", "q1", "q3", "iqr", "repeats")


class SchemaError(ValueError):
    """A results file that is not visdet.bench JSON of a supported version."""


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str | torch.device = "cpu") -> dict:
    """Versions and hardware of this run (no host name)."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "device": device.type,
        "device_name": name or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "git_commit": _git_commit(),
    }


def new_run(kind: str, settings: dict, device: str | torch.device = "cpu") -> dict:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(device),
        "settings": settings,
        "results": [],
    }


def new_result(component: str, group: str, impl: str, case: str, **fields) -> dict:
    """A result with every field: ``fields`` set, the others None (``extra``: {})."""
    unknown = sorted(set(fields) - set(RESULT_FIELDS))
    if unknown:
        raise ValueError(f"unknown result field(s) {unknown}; fields: {', '.join(RESULT_FIELDS)}")
    result = {**dict.fromkeys(RESULT_FIELDS), "extra": {}, **fields}
    result.update(component=component, group=group, impl=impl, case=case)
    return result


def result_key(result: dict) -> tuple[str, str, str]:
    return (result["component"], result["impl"], result["case"])


def check_run(run: object, source: str = "<run>") -> dict:
    """Return ``run`` if it is a supported results document, else raise SchemaError."""
    if not isinstance(run, dict) or run.get("schema") != SCHEMA:
        raise SchemaError(f"{source}: not a visdet.bench results file (no 'schema': '{SCHEMA}')")
    version = run.get("schema_version")
    if version not in SUPPORTED_VERSIONS:
        raise SchemaError(
            f"{source}: schema_version {version!r} is not supported; this visdet reads "
            f"versions {list(SUPPORTED_VERSIONS)}"
        )
    for key in ("kind", "created", "environment", "settings", "results"):
        if key not in run:
            raise SchemaError(f"{source}: missing '{key}'")
    for i, result in enumerate(run["results"]):
        missing = [f for f in RESULT_FIELDS if f not in result]
        if missing:
            raise SchemaError(f"{source}: results[{i}] misses {missing}")
        for metric in TIMING_METRICS:
            stats = result[metric]
            if stats is not None and any(f not in stats for f in STAT_FIELDS):
                raise SchemaError(f"{source}: results[{i}].{metric} needs {list(STAT_FIELDS)}")
    return run


def load_run(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark results not found: {path}")
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: invalid JSON ({e})") from None
    return check_run(run, str(path))


def save_run(run: dict, path: str | os.PathLike) -> Path:
    check_run(run, str(path))
    write_text_atomic(path, json.dumps(run, indent=1) + "\n")
    return Path(path)
