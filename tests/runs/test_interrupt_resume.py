"""SIGTERM (and Ctrl+C) mid-epoch: the current step is saved to checkpoints/last.ckpt, the
run ends with one line and status 128 + signal, and ``ckpt_path=last`` continues from that
step with the same global step, learning rate and optimizer state."""

import json
import signal
from pathlib import Path

import pytest
import torch
from tiny_runs import run_train_py, tiny_overrides

STEPS_PER_EPOCH = 4  # 16 training images, batches of 4


def train_py(tmp_path, *extra):
    args = tiny_overrides(
        tmp_path,
        f"hydra.run.dir={tmp_path / 'run'}",
        "test=false",
        "data.source.num_train=16",
        "sched=cosine",  # the learning rate changes at every step
        "+callbacks.probe._target_=interrupt_probe.SignalAtStep",
        f"+callbacks.probe.out={tmp_path / 'probe'}",
        *extra,
    )
    return run_train_py(args, cwd=tmp_path, pythonpath=Path(__file__).parent)


def recorded_steps(tmp_path, proc) -> list[dict]:
    files = sorted((tmp_path / "probe").glob("steps-*.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(files[-1].read_text())


@pytest.mark.slow  # two train.py runs of several seconds: make test-full
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_mid_epoch_saves_the_step_and_resume_continues_it(tmp_path, sig):
    stop_at = STEPS_PER_EPOCH + 1  # epoch 1, its second batch
    run = tmp_path / "run"
    stopped = train_py(
        tmp_path, f"+callbacks.probe.step={stop_at}", f"+callbacks.probe.signal_name={sig}"
    )
    status = 128 + int(signal.Signals[sig])
    assert stopped.returncode == status, stopped.stderr[-3000:]
    last_line = stopped.stderr.strip().splitlines()[-1]
    saved_step = stop_at + 1  # the step that was running when the signal came is finished
    assert last_line == (
        f"training interrupted by {sig} at epoch 1, step {saved_step}: saved "
        f"{run / 'checkpoints' / 'last.ckpt'}; continue with ckpt_path=last hydra.run.dir={run}"
    )
    assert "Traceback" not in stopped.stderr
    assert not (run / "metrics.json").exists() and not (run / "run.lock").exists()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == saved_step and ckpt["epoch"] == 1
    momentum = [s.get("momentum_buffer") for s in ckpt["optimizer_states"][0]["state"].values()]
    assert momentum and all(m is not None for m in momentum)  # the optimizer state is saved
    before = recorded_steps(tmp_path, stopped)
    assert [s["step"] for s in before] == list(range(stop_at + 1))

    resumed = train_py(tmp_path, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = recorded_steps(tmp_path, resumed)
    assert after[0]["step"] == saved_step  # continues from that step
    # the LR schedule continues: the next step's rate differs from the last one trained
    # before the signal, and equals the scheduler state saved in the checkpoint
    assert after[0]["lr"] != before[-1]["lr"]
    assert after[0]["lr"] == pytest.approx(ckpt["lr_schedulers"][0]["_last_lr"][0])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 3 * STEPS_PER_EPOCH and metrics["epochs"] == 3
