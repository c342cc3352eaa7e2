"""Capture and restore the random-number state (torch, CUDA, Python, NumPy) of a process."""

from __future__ import annotations

import random

import numpy as np
import torch


def capture_rng_state() -> dict:
    """Tensors, numbers, strings and tuples only, so a checkpoint holding it loads with
    ``torch.load(weights_only=True)`` (numpy's key array travels as a tensor)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global stream
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        numpy_state = (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    np.random.set_state(numpy_state)  # noqa: NPY002
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
