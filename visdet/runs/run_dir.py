"""The run directory is the run's own: checked before training starts, locked while the run
trains, never overwritten by another run.

- ``check_writable``: an output directory that cannot be written is refused before any work
  (``output directory <dir> is not writable (...)``).
- ``RunLock``: ``<run dir>/run.lock`` holds the pid, host, process start time (and SLURM job
  id) of the training run; a second run into the same directory is refused while that
  process lives. A lock whose process is gone (a killed run) is reported and taken over;
  a lock from another host is taken over only by the same SLURM job (a requeued job).
- ``used_by``: what in a directory shows that a run already trained there (``metrics.json``,
  checkpoints); fit.py refuses such a directory unless the run resumes it (``ckpt_path=last``
  or ``resume_if_exists=true``).

All of this happens on global rank 0 only: the other processes of a DDP run write nothing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from visdet.io.atomic_write import fsync_dir, stale_temporaries

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


class RunDirError(Exception):
    """The run directory cannot be used: not writable, in use, or holding a finished run."""


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and write (then remove) a probe file in it; raise
    RunDirError naming the folder when that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".visdet-write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunDirError(
            f"output directory {folder} is not writable ({e.strerror or e}): choose another "
            "with hydra.run.dir=... (or paths.log_dir=...)"
        ) from e
    return folder


def used_by(folder: str | os.PathLike) -> list[str]:
    """The files that show a run already trained in ``folder`` (relative names)."""
    folder = Path(folder)
    found = [p for p in (folder / "metrics.json",) if p.is_file()]
    ckpts = folder / "checkpoints"
    if ckpts.is_dir():
        found += sorted(p for p in ckpts.iterdir() if p.is_file() and not p.name.startswith("."))
    found += sorted(folder.glob("hpc_ckpt_*.ckpt"))  # Lightning's SLURM requeue checkpoints
    return [str(p.relative_to(folder)) for p in found]


def remove_incomplete_writes(folder: str | os.PathLike) -> None:
    """Remove the temporary files of checkpoint writes a killed run left in
    ``<folder>/checkpoints`` (the checkpoints under their real names are whole)."""
    for tmp in stale_temporaries(Path(folder) / "checkpoints"):
        log.warning("removing %s: an incomplete checkpoint write of a killed run", tmp)
        tmp.unlink(missing_ok=True)


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start is not None and Path("/proc").is_dir():
        return _process_start(pid) == start  # a reused pid is another process
    return True


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir/run.lock`` for this process."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.held = False

    def _record(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "process_start": _process_start(os.getpid()),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self._record(), f)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(self.path.parent)
        return True

    def _holder(self) -> dict:
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}  # unreadable or half-written: treated as a dead holder

    def _stale(self, holder: dict) -> bool:
        pid = holder.get("pid")
        if not isinstance(pid, int):
            return True
        slurm_job = os.environ.get("SLURM_JOB_ID")
        if slurm_job and holder.get("slurm_job_id") == slurm_job:
            return True  # this SLURM job, requeued: its earlier process is gone
        if holder.get("host") != socket.gethostname():
            return False  # cannot tell whether a process on another host runs
        return not _alive(pid, holder.get("process_start"))

    def acquire(self) -> RunLock:
        if self._create():
            self.held = True
            return self
        holder = self._holder()
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        if not self._stale(holder):
            raise RunDirError(
                f"run directory {self.path.parent} is in use by a running run ({who}, "
                f"started {holder.get('started', '?')}; {self.path}): wait for it to end, "
                "or choose another hydra.run.dir"
            )
        log.warning("%s is a stale lock (%s is not running): taking it over", self.path, who)
        self.path.unlink(missing_ok=True)
        if not self._create():
            raise RunDirError(
                f"run directory {self.path.parent} was just taken by another run ({self.path})"
            )
        self.held = True
        return self

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
