"""One-cycle learning-rate and momentum schedule with fastai's defaults.

Per parameter group with peak ``lr_max`` (the group's configured LR, so discriminative LRs
keep their ratios): the LR rises from ``lr_max / div`` to ``lr_max`` over the first
``pct_start`` of the steps and falls to ``lr_max / div_final`` by the last, both halves
cosine-shaped; the momentum (SGD ``momentum``, or ``beta1`` of Adam-family ``betas``) moves
inversely, ``moms[0] -> moms[1] -> moms[2]``. fastai: div 25, div_final 1e5, pct_start 0.25,
moms (0.95, 0.85, 0.95). (PyTorch's OneCycleLR defaults differ: pct 0.3, final div 1e4.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from visdet.lightning.schedulers import cosine_between


def one_cycle_value(
    step: int, total: int, pct_start: float, start: float, peak: float, end: float
) -> float:
    warm = max(1, round(total * pct_start))
    if step < warm:
        return cosine_between(start, peak, step / warm)
    return cosine_between(peak, end, min(1.0, (step - warm) / max(1, total - warm)))


class OneCycle(LRScheduler):
    """See the module docstring. Step it once per optimizer step."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        moms: Sequence[float] | None = (0.95, 0.85, 0.95),
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(total_steps, int) or total_steps < 1 or total_steps == math.inf:
            raise ValueError(
                "sched: one-cycle needs a known number of steps; set trainer.max_epochs or "
                f"trainer.max_steps (got total_steps={total_steps})"
            )
        if not 0 < pct_start < 1:
            raise ValueError(f"sched.pct_start must be in (0, 1), got {pct_start}")
        if div <= 0 or div_final <= 0:
            raise ValueError(f"sched.div and sched.div_final must be > 0, got {div}, {div_final}")
        if moms is not None and len(moms) != 3:
            raise ValueError(f"sched.moms must be three values (start, middle, end), got {moms}")
        self.total_steps, self.div, self.div_final, self.pct_start = (
            total_steps,
            div,
            div_final,
            pct_start,
        )
        self.moms = tuple(moms) if moms is not None else None
        for group in optimizer.param_groups:
            group.setdefault("peak_lr", group["lr"])
        if self.moms is not None:
            for i, group in enumerate(optimizer.param_groups):
                if "momentum" not in group and "betas" not in group:
                    raise ValueError(
                        f"sched.moms: optimizer group {i} has neither momentum nor "
                        "betas; set sched.moms=null"
                    )
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        step = min(self.last_epoch, self.total_steps)
        lrs = []
        for group in self.optimizer.param_groups:
            peak = group["peak_lr"]
            lrs.append(
                one_cycle_value(
                    step,
                    self.total_steps,
                    self.pct_start,
                    peak / self.div,
                    peak,
                    peak / self.div_final,
                )
            )
            if self.moms is not None:
                mom = one_cycle_value(step, self.total_steps, self.pct_start, *self.moms)
                if "betas" in group:
                    group["betas"] = (mom, *group["betas"][1:])
                else:
                    group["momentum"] = mom
        return lrs


def one_cycle(optimizer: Optimizer, total_steps: int, **kwargs) -> OneCycle:
    """Factory for configs (``_partial_: true``)."""
    return OneCycle(optimizer, total_steps, **kwargs)
