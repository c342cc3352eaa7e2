"""Shared pieces of the backbones' contract methods: cutting a ``Sequential`` trunk after a
stage, and the error for a checkpoint of another architecture."""

from __future__ import annotations

from torch import Tensor, nn


def cut_after(
    trunk: nn.Sequential, prefix: str, stage_index: dict[str, int], stage: str
) -> tuple[str, ...]:
    """Replace ``trunk[k]`` for every k after ``stage_index[stage]`` by an Identity; returns
    the names (``prefix.k``) of what was removed."""
    if stage not in stage_index:
        raise ValueError(f"stage must be one of {tuple(stage_index)}, got {stage!r}")
    dropped = []
    for k in range(stage_index[stage] + 1, len(trunk)):
        if not isinstance(trunk[k], nn.Identity):
            trunk[k] = nn.Identity()
            dropped.append(f"{prefix}.{k}")
    return tuple(dropped)


def foreign_keys_error(architecture: str, expected: str, state: dict[str, Tensor]) -> ValueError:
    """ValueError for a checkpoint that is not ``architecture``: the expected key and the
    file's first keys with their shapes."""
    first = ", ".join(f"{k} {list(v.shape)}" for k, v in list(state.items())[:4])
    return ValueError(f"expected a {architecture} state dict with {expected}; first keys: {first}")
