"""A killed run resumes from its last checkpoint (``ckpt_path=last``) without losing the
epochs it finished; ``ckpt_path`` errors name what is missing."""

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tiny_runs import run_train_py, tiny_overrides

from visdet.runs.resume import resolve_ckpt_path


def train_py(tmp_path, *extra):
    args = tiny_overrides(tmp_path, f"hydra.run.dir={tmp_path / 'run'}", "test=false", *extra)
    return run_train_py(args, cwd=tmp_path, pythonpath=Path(__file__).parent)


@pytest.mark.slow  # a subprocess run of several seconds: make test-full
def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    killed = train_py(
        tmp_path, "+callbacks.kill._target_=faults.KillAtEpoch", "+callbacks.kill.epoch=2"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpts = tmp_path / "run" / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", weights_only=False, map_location="cpu")
    assert last["epoch"] == 1 and last["global_step"] == 4  # epochs 0 and 1 finished, 2 steps each
    best_before = {p.name for p in ckpts.glob("epoch*.ckpt")}
    assert best_before  # the best-so-far checkpoint of the finished epochs

    resumed = train_py(tmp_path, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "ckpt_path=last: resuming from" in resumed.stderr + resumed.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # only epoch 2 was trained after the restart: 2 more steps, not 6
    assert metrics["epochs"] == 3 and metrics["global_step"] == 6
    final = torch.load(ckpts / "last.ckpt", weights_only=False, map_location="cpu")
    assert final["epoch"] == 2 and final["global_step"] == 6
    assert metrics["best_checkpoint"] and Path(metrics["best_checkpoint"]).is_file()


def cfg(tmp_path, ckpt_path, output="run"):
    return OmegaConf.create(
        {
            "ckpt_path": ckpt_path,
            "task_name": "train",
            "paths": {"output_dir": str(tmp_path / output), "log_dir": str(tmp_path / "logs")},
        }
    )


def test_last_prefers_this_run_then_the_newest_earlier_run(tmp_path):
    # (given=False: Hydra named the run directory; a given one never falls back)
    with pytest.raises(
        FileNotFoundError, match="ckpt_path=last: no last.ckpt in .*run/checkpoints"
    ):
        resolve_ckpt_path(cfg(tmp_path, "last"), given=False)
    runs = tmp_path / "logs" / "train" / "runs"
    for i, name in enumerate(("2026-01-02_10-00-00", "2026-01-01_10-00-00")):
        path = runs / name / "checkpoints" / "last.ckpt"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (1000 + i, 1000 + i))  # the second is the most recently written
    assert resolve_ckpt_path(cfg(tmp_path, "last"), given=False).endswith(
        "2026-01-01_10-00-00/checkpoints/last.ckpt"
    )
    own = tmp_path / "run" / "checkpoints" / "last.ckpt"
    own.parent.mkdir(parents=True)
    own.write_bytes(b"x")
    assert resolve_ckpt_path(cfg(tmp_path, "last"), given=False) == str(own)
    assert resolve_ckpt_path(cfg(tmp_path, "last"), given=True) == str(own)


def test_explicit_path_must_exist(tmp_path):
    assert resolve_ckpt_path(cfg(tmp_path, None)) is None
    with pytest.raises(FileNotFoundError, match="ckpt_path: checkpoint not found: .*nope.ckpt"):
        resolve_ckpt_path(cfg(tmp_path, str(tmp_path / "nope.ckpt")))
