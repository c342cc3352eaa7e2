"""Checkpoints and files are written atomically: a temporary file in the destination folder,
flushed and fsynced, then renamed. A kill or a full disk during the write leaves the
previous file whole under its name and no partial file there."""

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from visdet.io import atomic_write
from visdet.io.atomic_write import stale_temporaries, write_text_atomic
from visdet.lightning.atomic_checkpoint import AtomicCheckpointIO, CheckpointWriteError
from visdet.runs.fit import trainer_plugins
from visdet.runs.run_dir import remove_incomplete_writes

ROOT = Path(__file__).parents[2]


def good_checkpoint(path: Path) -> None:
    AtomicCheckpointIO().save_checkpoint({"global_step": 1, "w": torch.arange(10.0)}, path)


def assert_previous_intact(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    assert state["global_step"] == 1 and torch.equal(state["w"], torch.arange(10.0))


def test_full_disk_during_the_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    good_checkpoint(path)

    def fills_the_disk(obj, f, *args, **kwargs):
        f.write(b"\0" * 4096)  # part of the new checkpoint is written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fills_the_disk)
    with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*last\.ckpt "
                       r"\(No space left on device\); the previous file"):  # fmt: skip
        AtomicCheckpointIO().save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert_previous_intact(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no partial file


@pytest.mark.slow  # a multi-second run; make test-full
def test_sigkill_during_the_write_with_tmpdir_on_another_filesystem(tmp_path):
    other_fs = Path("/dev/shm")
    if not other_fs.is_dir() or other_fs.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's tmp_path")
    tmpdir = other_fs / f"visdet-test-{os.getpid()}"
    tmpdir.mkdir()
    path = tmp_path / "checkpoints" / "last.ckpt"
    good_checkpoint(path)
    script = textwrap.dedent(
        """
        import sys, time, torch
        from visdet.lightning.atomic_checkpoint import AtomicCheckpointIO

        def slow_save(obj, f, *args, **kwargs):  # killed half-way through the write
            f.write(b"\\0" * 100_000)
            f.flush()
            print("writing", flush=True)
            time.sleep(60)

        torch.save = slow_save
        AtomicCheckpointIO().save_checkpoint({"global_step": 2}, sys.argv[1])
        """
    )
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.stdout.close()
    assert_previous_intact(path)
    assert list(tmpdir.iterdir()) == []  # nothing went through $TMPDIR
    tmpdir.rmdir()
    # only a hidden temporary of the killed write, beside the checkpoint; the next run removes it
    leftovers = stale_temporaries(path.parent)
    assert [p.name.startswith(".last.ckpt.") for p in leftovers] == [True]
    remove_incomplete_writes(tmp_path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_atomic_write_fsyncs_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        atomic_write.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1]
    )
    write_text_atomic(tmp_path / "metrics.json", "{}")
    assert calls[:2] == ["fsync", "replace"]
    assert (tmp_path / "metrics.json").read_text() == "{}"


def test_every_trainer_writes_checkpoints_atomically(tmp_path):
    cfg = OmegaConf.create({"trainer": {}})
    trainer = L.Trainer(
        plugins=trainer_plugins(cfg), logger=False, enable_checkpointing=False,
        default_root_dir=tmp_path, accelerator="cpu",
    )  # fmt: skip
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def test_slurm_requeue_is_configured_from_the_config(monkeypatch):
    import signal as signals

    from lightning.fabric.plugins.environments import SLURMEnvironment

    monkeypatch.setattr(SLURMEnvironment, "detect", staticmethod(lambda: True))
    cfg = OmegaConf.create(
        {"trainer": {}, "slurm": {"auto_requeue": True, "requeue_signal": "SIGUSR2"}}
    )
    plugins = trainer_plugins(cfg)
    env = next(p for p in plugins if isinstance(p, SLURMEnvironment))
    assert env.auto_requeue and env.requeue_signal == signals.SIGUSR2
    assert any(isinstance(p, AtomicCheckpointIO) for p in plugins)
