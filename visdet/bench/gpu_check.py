"""The GPU readiness check behind ``scripts/gpu_check.sh``: refusal without CUDA, the FLOPs
of one training step, the GPU's dense peak, and the summary table with a pass/fail line.

    python -m visdet.bench.gpu_check preflight          # exit 2 without a CUDA GPU
    python -m visdet.bench.gpu_check flops OUT          # OUT/flops.json: one step's FLOPs
    python -m visdet.bench.gpu_check report OUT         # the table of OUT/<run>/ + PASS/FAIL

A run directory ``OUT/<name>`` is a ``visdet train`` run with ``+callbacks/benchmark=default``:
``metrics.json`` (mAP, peak memory) and ``benchmark_training.json`` (images/s of rank zero,
which is one GPU's share). Its name says how it ran: ``single_<precision>`` or
``ddp<N>_<precision>``. MFU is (FLOPs per image x images/s per GPU) / the GPU's dense peak for
that precision: the data sheet's figure where the GPU is listed (``DENSE_PEAK_TFLOPS``),
otherwise a measured 8192^2 matmul.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from pathlib import Path

import torch

# dense (no sparsity) peak TFLOP/s from the vendors' data sheets: (fp32, tf32, bf16/fp16)
DENSE_PEAK_TFLOPS = {
    "H200": (67.0, 494.5, 989.5),
    "H100 SXM": (67.0, 494.5, 989.5),
    "H100 PCIe": (51.0, 378.0, 756.0),
    "A100": (19.5, 156.0, 312.0),
    "L40S": (91.6, 183.0, 362.0),
    "L4": (30.3, 60.0, 121.0),
    "A10": (31.2, 62.5, 125.0),
    "V100": (15.7, 15.7, 125.0),
}
RUN_NAME = re.compile(r"^(single|ddp(\d+))_(32-true|16-mixed|bf16-mixed)$")
REFUSAL = (
    "gpu_check: no CUDA GPU is visible (torch.cuda.is_available() is False); run it on a "
    "machine with CUDA GPUs. Nothing was run."
)


def preflight() -> int:
    """0 and the GPUs seen, or 2 and the refusal when there is no CUDA GPU."""
    if not torch.cuda.is_available():
        print(REFUSAL)
        return 2
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"gpu_check: cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB")
    return 0


def spec_peak(gpu_name: str, precision: str) -> float | None:
    """The data sheet's dense TFLOP/s of ``gpu_name`` at ``precision`` (mixed: bf16/fp16
    tensor cores; 32-true: TF32 when matmuls may use it, else FP32), or None if unlisted."""
    for key, (fp32, tf32, half) in DENSE_PEAK_TFLOPS.items():
        if all(word in gpu_name for word in key.split()):
            if precision != "32-true":
                return half
            return tf32 if torch.backends.cuda.matmul.allow_tf32 else fp32
    return None


def measured_peak(device: str, dtype: torch.dtype, n: int = 8192, repeats: int = 10) -> float:
    """TFLOP/s of an n x n matmul on ``device`` in ``dtype`` (best of ``repeats``)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def step_flops(overrides: list[str] | None = None) -> dict:
    """FLOPs of one training step (forward and backward, ``torch.utils.flop_counter``) of
    the main job's detector on a batch like the built-in data's: ``{"flops": F,
    "images": B, "flops_per_image": F / B}``."""
    from visdet.bench.core import images_and_targets
    from visdet.bench.measure import count_flops
    from visdet.config.presets import build_detector

    torch.manual_seed(0)
    detector = build_detector("faster_rcnn_r18_fpn", 4, overrides or []).train()
    images, targets = images_and_targets(8, 128)
    for t in targets:  # the main job's 4 classes
        t["labels"] = (t["labels"] - 1) % 4 + 1

    def step():
        sum(detector(images, targets).values()).backward()

    flops = count_flops(step)
    return {"flops": flops, "images": len(images), "flops_per_image": flops / len(images)}


def read_run(run_dir: Path) -> dict:
    """One row of the table from a run directory (``status`` says what is missing)."""
    match = RUN_NAME.match(run_dir.name)
    row = {"run": run_dir.name, "gpus": 1, "precision": None, "status": "ok"}
    if match:
        row["gpus"] = int(match.group(2) or 1)
        row["precision"] = match.group(3)
    metrics_file, bench_file = run_dir / "metrics.json", run_dir / "benchmark_training.json"
    if not metrics_file.is_file():
        return {**row, "status": "failed: no metrics.json"}
    metrics = json.loads(metrics_file.read_text())
    row["mAP"] = metrics.get("val/mAP")
    if row["mAP"] is None or not math.isfinite(row["mAP"]):
        row["status"] = "failed: no finite val/mAP"
    if not bench_file.is_file():
        return {**row, "status": "failed: no benchmark_training.json"}
    step = json.loads(bench_file.read_text())["results"][-1]
    row["images_per_s_per_gpu"] = step["throughput"]["images_per_s"]
    row["step_ms"] = step["forward_backward_ms"]["median"]
    row["peak_memory_mib"] = step["peak_memory_mb"]
    return row


def gpu_peaks(gpu_name: str) -> dict[str, float]:
    """TFLOP/s per precision: the data sheet's, or a measured matmul where unlisted."""
    dtypes = {"32-true": torch.float32, "16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
    return {
        p: spec_peak(gpu_name, p) or measured_peak("cuda", dtype) for p, dtype in dtypes.items()
    }


def report(out_dir: str | Path, peaks: dict[str, float] | None = None) -> tuple[str, bool]:
    """The Markdown table of every run under ``out_dir`` and whether all passed; the last
    line is ``gpu_check: PASS`` or ``gpu_check: FAIL (...)``. ``peaks``: TFLOP/s per
    precision for the MFU column (None: n/a)."""
    out_dir = Path(out_dir)
    flops_file = out_dir / "flops.json"
    per_image = (
        json.loads(flops_file.read_text())["flops_per_image"] if flops_file.is_file() else None
    )
    tests_file = out_dir / "cuda_tests.rc"
    tests_rc = int(tests_file.read_text()) if tests_file.is_file() else None
    runs = sorted(p for p in out_dir.iterdir() if p.is_dir() and RUN_NAME.match(p.name))
    rows = [read_run(p) for p in runs]
    header = ["run", "GPUs", "precision", "images/s per GPU", "step ms", "peak MiB", "MFU",
              "val/mAP", "status"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in rows:
        peak = (peaks or {}).get(r["precision"])
        ips = r.get("images_per_s_per_gpu")
        mfu = per_image * ips / (peak * 1e12) if per_image and ips and peak else None
        cells = [r["run"], r["gpus"], r["precision"], _fmt(ips, ".1f"),
                 _fmt(r.get("step_ms"), ".1f"), _fmt(r.get("peak_memory_mib"), ".0f"),
                 _fmt(mfu, ".2%"), _fmt(r.get("mAP"), ".3f"), r["status"]]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    problems = [f"{r['run']} {r['status']}" for r in rows if r["status"] != "ok"]
    if not rows:
        problems.append("no runs found")
    if tests_rc not in (None, 0):
        problems.append(f"CUDA tests exited {tests_rc}")
    if not any(r["run"].startswith("ddp") for r in rows):
        problems.append("no DDP run")
    ok = not problems
    lines.append("")
    lines.append("gpu_check: PASS" if ok else f"gpu_check: FAIL ({'; '.join(problems)})")
    return "\n".join(lines), ok


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("preflight", "flops", "report"):
        print("usage: python -m visdet.bench.gpu_check preflight | flops OUT | report OUT")
        return 2
    if argv[0] == "preflight":
        return preflight()
    out = Path(argv[1])
    if argv[0] == "flops":
        out.mkdir(parents=True, exist_ok=True)
        (out / "flops.json").write_text(json.dumps(step_flops(), indent=2))
        return 0
    peaks = gpu_peaks(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
    text, ok = report(out, peaks)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
