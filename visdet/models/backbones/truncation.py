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


def checked_out_stages(out_stages, stage_names) -> tuple[str, ...]:
    """``out_stages`` in the backbone's order; a ValueError for an empty list or a name not
    in ``stage_names``."""
    bad = [s for s in out_stages if s not in stage_names]
    if bad or not out_stages:
        raise ValueError(
            f"out_stages must be a non-empty subset of {tuple(stage_names)}, got {list(out_stages)}"
        )
    return tuple(s for s in stage_names if s in out_stages)


def without_unheld(
    state: dict[str, Tensor], classifier: str | None, dropped: tuple[str, ...]
) -> dict[str, Tensor]:
    """``state`` without the ``classifier`` module's keys (None: the backbone keeps its
    classifier) and without the layers ``truncate`` dropped."""
    skipped = (f"{classifier}.",) if classifier else ()
    skipped += tuple(f"{d}." for d in dropped)
    return {k: v for k, v in state.items() if not k.startswith(skipped)}


def frozen_trunk_length(frozen_stages: int) -> int:
    """How many leading ``features`` modules ``frozen_stages`` freezes in a trunk laid out
    stem, stage 1, down 2, stage 2, ... (ConvNeXt, Swin): 0 for -1, the stem for 0, and
    stage k ends at index 2k - 1."""
    return 0 if frozen_stages < 0 else max(1, 2 * frozen_stages)
