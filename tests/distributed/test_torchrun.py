"""DDP started by torchrun (each process composes its own Hydra config, as under SLURM):
one run directory named after the rendezvous id, and rank 1 writes nothing there."""

import json

import pytest
from tiny_runs import run_train_py, tiny_overrides


@pytest.mark.slow  # a subprocess run of several seconds: make test-full
def test_torchrun_processes_share_one_run_directory(tmp_path):
    overrides = tiny_overrides(
        tmp_path,
        "trainer=ddp_cpu",
        f"paths.log_dir={tmp_path / 'outputs'}",
        "trainer.max_epochs=1",
        "test=false",
    )
    launcher = ["-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2"]
    launcher += ["--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", "--rdzv-id=tiny7"]
    proc = run_train_py(overrides, cwd=tmp_path, launcher=launcher)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = tmp_path / "outputs" / "train" / "runs"
    assert [p.name for p in runs.iterdir()] == ["torchrun-tiny7"]
    run = runs / "torchrun-tiny7"
    assert sorted(p.name for p in run.iterdir()) == [
        ".hydra",
        "augmentation_preview.png",  # written once, by rank zero
        "checkpoints",
        "config_resolved.yaml",
        "csv",
        "metrics.json",
        "train.log",
    ]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and metrics["global_step"] == 1  # 8 images / (2 x 4)
    assert metrics["val/num_images"] == 4
    assert proc.stdout.count("final: val/mAP=") == 1
