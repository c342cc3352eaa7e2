"""The auto-wrap policy of ``trainer=fsdp``: every submodule holding at least
``min_num_params`` parameters becomes its own FSDP unit (torch's size-based policy), so
parameters are gathered unit by unit instead of all at once. A function of plain numbers,
so Hydra can build it from config."""

from __future__ import annotations

import functools

from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy


def size_based_policy(min_num_params: int = 1_000_000):
    if min_num_params < 1:
        raise ValueError(
            f"trainer.strategy.auto_wrap_policy.min_num_params must be >= 1, got {min_num_params}"
        )
    return functools.partial(size_based_auto_wrap_policy, min_num_params=int(min_num_params))
