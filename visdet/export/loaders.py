"""Load an exported file with its backend: TorchScript (.pt) or AOTInductor (.pt2)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch


def load_backend(path: str | os.PathLike, backend: str, device: str | torch.device = "cpu"):
    """A callable ``model(*inputs) -> Tensor`` for an exported file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    if backend == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
        return module.eval()
    if backend == "aotinductor":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch._inductor.aoti_load_package(str(path))
    raise ValueError(f"backend must be 'torchscript' or 'aotinductor', got {backend!r}")
