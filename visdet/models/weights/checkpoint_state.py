"""Read the state dict of a weights file without ever running code from it.

A Lightning ``.ckpt`` (``state_dict`` inside), a plain ``torch.save``-d state dict or a
``.safetensors`` file. Pickled files are read with ``torch.load(weights_only=True)``, which
accepts tensors, numbers, strings and containers only: a file that needs anything else could
run code when unpickled, so it is refused naming the setting and what to do. A user's own
older local file that holds plain data beyond tensors (numpy arrays, as visdet's earlier
checkpoints stored their random-number state) can be opted in with ``allow_pickle=True`` (the
callers' clearly named setting): the weights-only unpickler then also accepts numpy's array,
dtype and scalar types (``plain_data_globals``), and logs a warning. It never unpickles
anything else, so even an opted-in file cannot run code; URLs are never opted in.
"""

from __future__ import annotations

import contextlib
import importlib
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


# plain-data globals an opted-in file may refer to: numpy arrays, dtypes and scalars
_PLAIN_DATA = re.compile(
    r"^numpy\.(?:_core|core)\.multiarray\.(?:_reconstruct|scalar)$"
    r"|^numpy\.(?:ndarray|dtype)$|^numpy\.dtypes\.\w+DType$"
)


def _refused_globals(path: Path, error: pickle.UnpicklingError) -> list[str]:
    """The globals (``module.name``) beyond the weights-only defaults that ``path`` refers
    to; empty when the bytes are simply not a checkpoint."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - a legacy (non-zip) file: the error names the first one
        return re.findall(r"GLOBAL ([\w.]+)", str(error))


def _check_globals(path: Path, names: list[str], key: str, allow_pickle: bool, setting) -> None:
    """UnsafeWeightsError unless every global is plain data and the file is opted in."""
    other = [n for n in names if not _PLAIN_DATA.match(n)]
    if other:
        raise UnsafeWeightsError(
            f"{key}: {path} needs arbitrary unpickling, which could run code from the file "
            f"(it refers to {other[0]}); re-save its tensors with torch.save(state_dict) or "
            "as .safetensors"
        )
    if not allow_pickle:
        hint = f"; for your own local file set {setting}=true" if setting else ""
        raise UnsafeWeightsError(
            f"{key}: {path} holds numpy data beyond tensors (it refers to {names[0]}); "
            f"re-save its tensors with torch.save(state_dict) or as .safetensors{hint}"
        )


def _numpy_data_types() -> list:
    """numpy's array reconstruction, array, dtype and scalar types and every dtype class:
    what a pickled numpy array refers to (data, no behaviour beyond building it)."""
    import numpy as np

    core = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
    multiarray = importlib.import_module(core)
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    return [
        multiarray._reconstruct,
        multiarray.scalar,
        np.ndarray,
        np.dtype,
        *(getattr(dtypes, name) for name in getattr(dtypes, "__all__", ())),
    ]


@contextlib.contextmanager
def allowing_plain_data(path: str | Path, key: str, setting: str | None = None):
    """Inside: ``torch.load(path, weights_only=True)`` (and Lightning's resume with
    ``weights_only=True``) also accept numpy data; UnsafeWeightsError when ``path`` refers to
    anything else."""
    names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    _check_globals(Path(path), names, key, True, setting)
    with torch.serialization.safe_globals(_numpy_data_types()):
        yield


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
    """The object saved in ``path`` (a ``torch.save`` file), always read with
    ``weights_only=True``; ``allow_pickle`` (the caller's setting ``allow_pickle_key``) also
    accepts numpy data, see the module docstring. Errors are one line naming the config
    ``key`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _refused_globals(path, e)
        if not refused:  # the weights-only unpickler names what it refused; this is not weights
            raise WeightsFileError(
                f"{key}: {path} is not a readable checkpoint (truncated or corrupt?)"
            ) from None
        _check_globals(path, refused, key, allow_pickle, allow_pickle_key)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise WeightsFileError(
            f"{key}: {path} is not a readable checkpoint (truncated or corrupt? "
            f"{type(e).__name__}: {detail})"
        ) from None
    log.warning(
        "%s: %s holds numpy data beyond tensors; read with it allowed (%s=true)",
        key,
        path,
        allow_pickle_key,
    )
    with allowing_plain_data(path, key, allow_pickle_key):
        return torch.load(path, map_location="cpu", weights_only=True)


def check_weights_file(
    path: str | Path, key: str, allow_pickle: bool = False, allow_pickle_key: str | None = None
) -> None:
    """``load_weights_file``'s refusals without loading the tensors: reads only the pickle
    of a ``torch.save`` zip file (a checkpoint that is about to be loaded anyway, e.g. by
    Lightning on resume). A legacy or unreadable file is read in full to say what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: checkpoint not found: {path}")
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - not a readable zip: the full read names the problem
        load_weights_file(path, key, allow_pickle, allow_pickle_key)
        return
    if names:
        _check_globals(path, names, key, allow_pickle, allow_pickle_key)


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
