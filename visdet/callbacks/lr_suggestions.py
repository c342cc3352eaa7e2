"""Learning-rate suggestions from an LR-finder curve (fastai's methods)."""

from __future__ import annotations

import math
from collections.abc import Sequence

METHODS = ("valley", "steep", "minimum")


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], method: str = "valley") -> float:
    """Suggested LR for a curve of (smoothed) losses at increasing LRs.

    - ``valley``: the middle of the longest decreasing stretch of the curve (longest
      decreasing subsequence, as fastai), robust to a noisy tail.
    - ``steep``: where the loss falls fastest per decade of LR (most negative slope).
    - ``minimum``: the LR at the lowest loss, divided by 10.
    """
    if method not in METHODS:
        raise ValueError(f"lr_finder.suggestion must be one of {METHODS}, got {method!r}")
    pts = [(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss)]
    if len(pts) < 3:
        raise ValueError(f"need at least 3 finite points on the LR curve, got {len(pts)}")
    lrs_, losses_ = [p[0] for p in pts], [p[1] for p in pts]
    if method == "minimum":
        return lrs_[min(range(len(losses_)), key=losses_.__getitem__)] / 10
    if method == "steep":
        logs = [math.log10(lr) for lr in lrs_]
        slopes = []
        for i in range(len(pts)):  # central differences inside, one-sided at the ends
            lo, hi = max(0, i - 1), min(len(pts) - 1, i + 1)
            slopes.append((losses_[hi] - losses_[lo]) / (logs[hi] - logs[lo]))
        return lrs_[min(range(len(slopes)), key=slopes.__getitem__)]
    n = len(losses_)
    length = [1] * n  # longest decreasing subsequence ending at i
    start = list(range(n))
    for i in range(1, n):
        for j in range(i):
            if losses_[j] > losses_[i] and length[j] + 1 > length[i]:
                length[i] = length[j] + 1
                start[i] = start[j]
    end = max(range(n), key=lambda i: (length[i], -i))
    return lrs_[(start[end] + end) // 2]
