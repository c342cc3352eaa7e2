"""The run directory is the run's own: an unwritable one is refused before training, a
running run's lock refuses a second run, a directory holding a run is not overwritten unless
resumed, and ``ckpt_path=last`` with an explicit run directory without checkpoints names it."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny_runs import run_train_py, tiny_cfg, tiny_overrides

from visdet.runs.fit import FitTask, claim_run_dir, fit
from visdet.runs.resume import resolve_ckpt_path
from visdet.runs.run_dir import LOCK_FILE, RunDirError, RunLock


def never(*args):
    raise AssertionError("training must not start")


NO_TRAINING = FitTask(never, never, never)


def train_py(tmp_path, run_dir, *extra):
    args = tiny_overrides(tmp_path, f"hydra.run.dir={run_dir}", "test=false", *extra)
    return run_train_py(args, cwd=tmp_path)


def finished_run(run_dir: Path) -> Path:
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run_dir / "metrics.json").write_text('{"val/mAP": 0.5}')
    return run_dir


def test_unwritable_output_dir_is_refused_before_training(tmp_path):
    (tmp_path / "a_file").write_text("in the way")  # (tests run as root: no chmod)
    cfg = tiny_cfg(tmp_path, f"paths.output_dir={tmp_path / 'a_file' / 'run'}")
    with pytest.raises(RunDirError, match=r"output directory .*a_file/run is not writable"):
        fit(cfg, NO_TRAINING)


def test_rerun_into_a_finished_run_is_refused_and_left_alone(tmp_path):
    run = finished_run(tmp_path / "run")
    cfg = tiny_cfg(tmp_path)
    with pytest.raises(RunDirError, match=r"run directory .*run already holds a finished run "
                       r"\(metrics.json, checkpoints/last.ckpt\): not overwriting it"):  # fmt: skip
        fit(cfg, NO_TRAINING)
    assert (run / "metrics.json").read_text() == '{"val/mAP": 0.5}'
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"weights"
    assert not (run / LOCK_FILE).exists()
    # resuming it is allowed (and takes its last.ckpt)
    own = run / "checkpoints" / "last.ckpt"
    for extra in ("ckpt_path=last", "resume_if_exists=true", f"ckpt_path={own}"):
        cfg = tiny_cfg(tmp_path, extra)
        claim_run_dir(cfg, run).release()
        assert resolve_ckpt_path(cfg) == str(own)


def test_second_run_into_a_running_run_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):  # a live process (this one) trains there
        holder = json.loads((run / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(RunDirError, match=rf"run directory .*run is in use by a running run "
                           rf"\(pid {os.getpid()} on "):  # fmt: skip
            claim_run_dir(tiny_cfg(tmp_path), run)
        assert (run / LOCK_FILE).exists()
    assert not (run / LOCK_FILE).exists()


def test_stale_lock_of_a_dead_process_is_reported_and_taken_over(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with RunLock(run):
        pass
    (run / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    with caplog.at_level(logging.WARNING):
        lock = claim_run_dir(tiny_cfg(tmp_path), run)
    assert f"is a stale lock (pid {dead.pid} on" in caplog.text
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_last_with_an_explicit_empty_run_dir_names_it(tmp_path):
    # an earlier run exists, but the run directory was given: no fallback to it
    earlier = tmp_path / "logs" / "train" / "runs" / "2026-01-01" / "checkpoints"
    earlier.mkdir(parents=True)
    (earlier / "last.ckpt").write_bytes(b"x")
    cfg = tiny_cfg(tmp_path, "ckpt_path=last", f"paths.log_dir={tmp_path / 'logs'}")
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: the run directory .*/run "
                       r"holds no checkpoint .*is hydra.run.dir right"):  # fmt: skip
        resolve_ckpt_path(cfg)
    # when Hydra names the directory, the newest earlier run is taken (and logged)
    plain = OmegaConf.create(
        {
            "ckpt_path": "last",
            "task_name": "train",
            "paths": {"output_dir": str(tmp_path / "new"), "log_dir": str(tmp_path / "logs")},
        }
    )
    assert resolve_ckpt_path(plain, given=False) == str(earlier / "last.ckpt")


@pytest.mark.slow  # three train.py start-ups (~5 s each): make test-full
def test_train_py_refusals_are_one_line(tmp_path):
    run = finished_run(tmp_path / "run")
    done = train_py(tmp_path, run)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"training stopped: run directory {run} already holds a finished run")
    )
    assert "Traceback" not in done.stderr
    empty = tmp_path / "empty"
    missing = train_py(tmp_path, empty, "ckpt_path=last")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1] == (
        f"training stopped: ckpt_path=last: the run directory {empty} holds no checkpoint (no "
        "checkpoints/last.ckpt): is hydra.run.dir right? (without hydra.run.dir, "
        "ckpt_path=last resumes the newest earlier run)"
    )
    busy = tmp_path / "busy"
    busy.mkdir()
    with RunLock(busy):  # a running run holds the directory
        second = train_py(tmp_path, busy)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert (
        second.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"training stopped: run directory {busy} is in use by a running run (pid {os.getpid()} "
        )
    )
