"""Lightning checkpoints written so that a kill or a full disk never loses one.

Lightning's ``TorchCheckpointIO`` writes through fsspec: its temporary file lives in
``$TMPDIR`` and is moved into place, which across filesystems (tmpfs ``/tmp``, NFS outputs)
becomes a copy over the old file; a SIGKILL or a full disk then leaves ``last.ckpt``
truncated under its real name. ``AtomicCheckpointIO`` writes a local checkpoint with
``torch.save`` into a temporary file in the destination folder, flushes and fsyncs it and
renames it over the destination (``visdet.io.atomic_write.atomic_open``): readers, and a
resumed run, see the previous checkpoint or the whole new one. fit.py gives it to every
trainer (``trainer.plugins`` may name another ``CheckpointIO``); remote URLs (``s3://``)
keep Lightning's path.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from visdet.io.atomic_write import atomic_open


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the previous file is kept."""


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = os.fspath(path)
        try:
            with atomic_open(path) as f:
                torch.save(checkpoint, f)
        except OSError as e:
            reason = e.strerror or str(e)
            error = CheckpointWriteError(
                f"could not write checkpoint {path} ({reason}); the previous file under "
                "that name, if any, is unchanged"
            )
            error.errno = e.errno
            raise error from e
