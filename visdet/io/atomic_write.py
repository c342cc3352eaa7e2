"""Write files so that readers see the old file or the whole new one, never part of it.

The data goes to a temporary file in the destination folder (``.<name>.<random>.tmp``), is
flushed and fsynced, then renamed over the destination (``os.replace``, atomic within one
filesystem) and the folder is fsynced so that the rename survives a crash. Whatever stops
the write (an exception, a full disk) removes the temporary file and leaves the previous
file under its name; a process killed outright (SIGKILL) can leave only a hidden ``.tmp``
file, never a partial file under the real name (``remove_stale_temporaries`` clears them).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(path) as tmp: <write the file tmp>`` (e.g. a download into it):
    ``tmp`` is fsynced and renamed over ``path`` only when the block ends without an error,
    and removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """``with atomic_open(path) as f: f.write(...)``: ``path`` is replaced by what was
    written only when the block ends without an error."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, then rename over ``path``."""
    with atomic_open(path) as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``write_bytes_atomic`` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stale_temporaries(folder: str | os.PathLike, name: str = "*") -> list[Path]:
    """Temporary files of ``atomic_open`` writes into ``folder`` that never finished (the
    writer was killed); ``name`` restricts them to one destination file name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f".{name}.*{TMP_SUFFIX}"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
