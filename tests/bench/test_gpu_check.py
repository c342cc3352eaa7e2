"""scripts/gpu_check.sh on a machine without CUDA refuses before running anything; its
report reads run directories into the table and the pass/fail line."""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from visdet.bench.gpu_check import REFUSAL, read_run, report, spec_peak

ROOT = Path(__file__).parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_the_script_refuses_without_cuda(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out)],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHON": __import__("sys").executable},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip() == REFUSAL
    assert not out.exists()  # nothing was run


def fake_run(root, name, images_per_s=100.0, mAP=0.5, bench=True):
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"val/mAP": mAP}))
    if bench:
        step = {"throughput": {"images_per_s": images_per_s},
                "forward_backward_ms": {"median": 80.0}, "peak_memory_mb": 1234.0}  # fmt: skip
        (run / "benchmark_training.json").write_text(json.dumps({"results": [{}, step]}))
    return run


def test_report_table_mfu_and_pass(tmp_path):
    fake_run(tmp_path, "single_32-true", images_per_s=200.0)
    fake_run(tmp_path, "single_bf16-mixed", images_per_s=400.0)
    fake_run(tmp_path, "ddp2_bf16-mixed", images_per_s=350.0)
    (tmp_path / "flops.json").write_text(json.dumps({"flops_per_image": 1e10}))
    (tmp_path / "cuda_tests.rc").write_text("0\n")
    text, ok = report(tmp_path, {"32-true": 10.0, "bf16-mixed": 100.0})
    assert ok and text.splitlines()[-1] == "gpu_check: PASS"
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:-2]}
    # MFU = 1e10 FLOPs/image x 200 images/s / 10 TFLOP/s = 20 %
    assert "| 20.00% |" in rows["single_32-true"]
    assert "| 4.00% |" in rows["single_bf16-mixed"]
    assert rows["ddp2_bf16-mixed"].startswith("| ddp2_bf16-mixed | 2 | bf16-mixed | 350.0 |")


def test_report_fails_with_the_reasons(tmp_path):
    fake_run(tmp_path, "single_32-true", mAP=float("nan"))
    fake_run(tmp_path, "single_16-mixed", bench=False)
    (tmp_path / "cuda_tests.rc").write_text("1\n")
    text, ok = report(tmp_path)
    assert not ok
    last = text.splitlines()[-1]
    assert last.startswith("gpu_check: FAIL (")
    for reason in ("single_32-true failed: no finite val/mAP",
                   "single_16-mixed failed: no benchmark_training.json",
                   "CUDA tests exited 1", "no DDP run"):  # fmt: skip
        assert reason in last
    assert read_run(tmp_path / "single_16-mixed")["status"].startswith("failed")
    assert "MFU" in text and "n/a" in text  # no peaks given: no MFU


def test_data_sheet_peaks():
    assert spec_peak("NVIDIA H200", "bf16-mixed") == 989.5
    assert spec_peak("NVIDIA A100-SXM4-80GB", "16-mixed") == 312.0
    assert spec_peak("Some Future GPU", "bf16-mixed") is None


def test_step_flops_counts_the_main_jobs_training_step():
    from visdet.bench.gpu_check import step_flops

    counted = step_flops()
    # issue 20 measured 69 GFLOPs for one step (8 images of 128 px, forward + backward)
    assert counted["flops"] == pytest.approx(69e9, rel=0.1)
    assert (
        counted["flops_per_image"] == counted["flops"] / counted["images"] == counted["flops"] / 8
    )
