"""Learning-rate schedules stepped every optimizer step: linear warm-up, then multistep or
cosine decay. Built by config with ``_partial_: true`` and completed by the module with
the optimizer and the total number of steps."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def cosine_between(start: float, end: float, pos: float) -> float:
    """Cosine interpolation from ``start`` (pos 0) to ``end`` (pos 1)."""
    return start + (1 - math.cos(math.pi * pos)) / 2 * (end - start)


def _warmup(step: int, warmup_steps: int, warmup_factor: float) -> float:
    if step >= warmup_steps:
        return 1.0
    alpha = step / max(1, warmup_steps)
    return warmup_factor * (1 - alpha) + alpha


def warmup_multistep(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 100,
    warmup_factor: float = 0.001,
    milestones: Sequence[float] = (0.75, 0.9),
    gamma: float = 0.1,
) -> LambdaLR:
    """Linear warm-up from ``warmup_factor`` x LR, then x``gamma`` at each milestone, given
    as fractions of the total steps."""
    if any(not 0 < m < 1 for m in milestones):
        raise ValueError(f"sched.milestones are fractions of training in (0, 1), got {milestones}")
    marks = sorted(int(m * total_steps) for m in milestones)

    def factor(step: int) -> float:
        return _warmup(step, warmup_steps, warmup_factor) * gamma ** sum(step >= m for m in marks)

    return LambdaLR(optimizer, factor)


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 100,
    warmup_factor: float = 0.001,
    final_factor: float = 0.01,
) -> LambdaLR:
    """Linear warm-up, then cosine decay to ``final_factor`` x LR at the last step."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return _warmup(step, warmup_steps, warmup_factor)
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return cosine_between(1.0, final_factor, t)

    return LambdaLR(optimizer, factor)
