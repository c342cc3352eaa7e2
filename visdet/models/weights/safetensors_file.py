"""Write a detector's weights as one ``.safetensors`` file (the ecosystem's safe weights
format: no code runs when it is read), with its config and class names in the metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import Tensor

from visdet.io.atomic_write import write_bytes_atomic

FORMAT = "visdet-detector-v1"


def save_weights(
    state: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, object]
) -> Path:
    """Write ``state`` (tensors; shared or non-contiguous ones are copied) to ``path``
    atomically; ``metadata`` values are stored as JSON strings beside ``format``."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = {"format": FORMAT, **{k: json.dumps(v) for k, v in metadata.items()}}
    path = Path(path)
    write_bytes_atomic(path, save(tensors, metadata=meta))
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, object]:
    """The metadata ``save_weights`` wrote (JSON values decoded)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: v if k == "format" else json.loads(v) for k, v in meta.items()}
