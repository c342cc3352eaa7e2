"""Read the state dict of a checkpoint file: a Lightning ``.ckpt`` (``state_dict`` inside)
or a plain ``torch.save``-d state dict."""

from __future__ import annotations

import torch
from torch import Tensor


def read_state_dict(path: str, key: str = "init_from") -> dict[str, Tensor]:
    """The tensors of ``path``; errors name the config ``key`` that gave the path."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{key}: checkpoint not found: {path}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{key}: {path} holds no state dict")
    return state
