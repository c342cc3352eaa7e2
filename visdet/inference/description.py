"""Read a checkpoint for inference: its tensors and, when visdet wrote it, the model
description stored with them (``visdet.lightning.model_description``), which rebuilds the
detector, names its classes and says how images are resized before it.

``.ckpt`` (or any ``torch.save`` file): read with ``weights_only=True``; the description is
``checkpoint["visdet"]``, the tensors ``checkpoint["state_dict"]`` (or the file itself when it is
a plain state dict). ``.safetensors``: the tensors, and the ``visdet`` metadata entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from visdet.models.weights.checkpoint_state import (
    WeightsFileError,
    load_weights_file,
    read_safetensors,
)

FORMAT = "visdet-detector-v1"
PREPROCESSING_KEYS = ("min_size", "max_size", "antialias")
KEY = "ckpt"


@dataclass(frozen=True)
class CheckpointContents:
    """What a checkpoint file holds: ``state`` its tensors (a Lightning checkpoint's
    ``state_dict``, keys ``detector.*``), ``description`` the stored model description or
    None."""

    state: dict[str, Tensor]
    description: dict | None


def read_checkpoint(path: str | Path) -> CheckpointContents:
    """The tensors and the model description (None when absent) of ``path``; errors name the
    file (FileNotFoundError, WeightsFileError, ValueError for a malformed description)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{KEY}: checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from visdet.models.weights.safetensors_file import read_metadata

        state = read_safetensors(path, KEY)
        description = read_metadata(path).get("visdet")
    else:
        checkpoint = load_weights_file(path, KEY)
        if not isinstance(checkpoint, dict):
            raise WeightsFileError(f"{KEY}: {path} holds no state dict")
        description = checkpoint.get("visdet")
        state = checkpoint.get("state_dict", checkpoint)
        if not isinstance(state, dict):
            raise WeightsFileError(f"{KEY}: {path} holds no state dict")
        if "state_dict" not in checkpoint:
            state = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if description is not None:
        check_description(description, path)
    return CheckpointContents(state, description)


def check_description(description: object, path: str | Path) -> None:
    """ValueError naming the file and the entry when ``description`` is not a
    ``visdet-detector-v1`` model description."""
    where = f"{KEY} {path}: the stored model description"
    if not isinstance(description, Mapping):
        raise ValueError(f"{where} is a {type(description).__name__}, expected a mapping")
    if description.get("format") != FORMAT:
        raise ValueError(
            f"{where} has format {description.get('format')!r}; this visdet reads {FORMAT!r}"
        )
    detector = description.get("detector")
    if not isinstance(detector, Mapping) or "_target_" not in detector:
        raise ValueError(f"{where} has no 'detector' entry with a _target_")
    classes = description.get("classes", [])
    if not isinstance(classes, list) or not all(
        isinstance(c, Mapping) and isinstance(c.get("name"), str) and isinstance(c.get("id"), int)
        for c in classes
    ):
        raise ValueError(f"{where}: 'classes' must be a list of {{id: int, name: str}}")
    check_preprocessing(description.get("preprocessing"), f"{where}: preprocessing")


def check_preprocessing(preprocessing: object, what: str = "preprocessing") -> dict:
    """The validated preprocessing ``{"min_size": int >= 1 | None, "max_size": int >= 1,
    "antialias": bool}`` (a plain dict copy); ValueError/TypeError naming ``what``."""
    if not isinstance(preprocessing, Mapping):
        raise TypeError(
            f"{what} must be a mapping with keys {list(PREPROCESSING_KEYS)}, got "
            f"{type(preprocessing).__name__}"
        )
    keys = set(preprocessing)
    if keys != set(PREPROCESSING_KEYS):
        raise ValueError(
            f"{what} must have exactly the keys {list(PREPROCESSING_KEYS)}, got {sorted(keys)}"
        )
    min_size, max_size = preprocessing["min_size"], preprocessing["max_size"]
    antialias = preprocessing["antialias"]
    if min_size is not None and (
        isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1
    ):
        raise ValueError(f"{what}.min_size must be a positive int or null, got {min_size!r}")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"{what}.max_size must be a positive int, got {max_size!r}")
    if not isinstance(antialias, bool):
        raise TypeError(f"{what}.antialias must be true or false, got {antialias!r}")
    return {"min_size": min_size, "max_size": max_size, "antialias": antialias}


def build_described_detector(description: Mapping, path: str | Path) -> nn.Module:
    """The nn.Module ``description["detector"]`` instantiates (Hydra ``_target_``)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(dict(description["detector"]))
    except InstantiationException as e:
        raise ValueError(f"{KEY} {path}: cannot build the stored detector: {e}") from e


def described_num_classes(description: Mapping) -> int | None:
    """The number of classes the description gives (its class list, else the detector's
    ``num_classes``); None when it gives neither."""
    classes = description.get("classes") or []
    if classes:
        return len(classes)
    value = description["detector"].get("num_classes")
    return value if isinstance(value, int) else None
