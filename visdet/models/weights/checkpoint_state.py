"""Read the state dict of a weights file without ever running code from it.

A Lightning ``.ckpt`` (``state_dict`` inside), a plain ``torch.save``-d state dict or a
``.safetensors`` file. Pickled files are read with ``torch.load(weights_only=True)``, which
accepts tensors, numbers, strings and containers only: a file that needs anything else could
run code when unpickled, so it is refused naming the setting and what to do. A user's own
old, trusted local file can be opted in with ``allow_pickle=True`` (the callers' clearly
named setting), which logs a warning; URLs never are.
"""

from __future__ import annotations

import logging
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class WeightsFileError(ValueError):
    """A weights or checkpoint file cannot be read: truncated, corrupt, or not weights."""


class UnsafeWeightsError(WeightsFileError):
    """A weights file needs arbitrary unpickling (it could run code) and was not opted in."""


def read_safetensors(path: str | Path, key: str) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsFileError(f"{key}: {path} is not a readable safetensors file ({e})") from None


def load_weights_file(
    path: str | Path, key: str, allow_pickle: bool = False, allow_pickle_key: str | None = None
):
    """The object saved in ``path`` (a ``torch.save`` file), read with
    ``weights_only=True``; see the module docstring for ``allow_pickle``. Errors are one
    line naming the config ``key`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # the weights-only unpickler names the global (class or function) it refused;
        # any other unpickling error means the bytes are not a checkpoint at all
        refused = re.findall(r"GLOBAL ([\w.]+)", str(e))
        if not refused:
            raise WeightsFileError(
                f"{key}: {path} is not a readable checkpoint (truncated or corrupt?)"
            ) from None
        if not allow_pickle:
            setting = f"; for your own trusted local file set {allow_pickle_key}=true" * bool(
                allow_pickle_key
            )
            raise UnsafeWeightsError(
                f"{key}: {path} needs arbitrary unpickling, which could run code from the file "
                f"(it refers to {refused[0]}); re-save its tensors with "
                f"torch.save(state_dict) or as .safetensors{setting}"
            ) from None
        log.warning("%s: %s is read with full unpickling (%s=true)", key, path, allow_pickle_key)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise WeightsFileError(
            f"{key}: {path} is not a readable checkpoint (truncated or corrupt? "
            f"{type(e).__name__}: {detail})"
        ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, pickle.UnpicklingError) as e:
        raise WeightsFileError(f"{key}: {path} is not a readable checkpoint ({e})") from None


def read_state_dict(
    path: str, key: str = "init_from", allow_pickle: bool = False, allow_pickle_key=None
) -> dict[str, Tensor]:
    """The tensors of ``path``; errors name the config ``key`` that gave the path."""
    if str(path).endswith(".safetensors"):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{key}: checkpoint not found: {path}")
        return read_safetensors(path, key)
    checkpoint = load_weights_file(path, key, allow_pickle, allow_pickle_key)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise WeightsFileError(f"{key}: {path} holds no state dict")
    return state
