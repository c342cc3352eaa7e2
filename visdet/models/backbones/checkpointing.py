"""Gradient checkpointing of backbone stages: the activations inside a checkpointed stage are
not kept for backward but recomputed from each block's input (``torch.utils.checkpoint``,
non-reentrant), trading compute for memory.

Gradients are those of the plain forward: the random state is replayed (stochastic depth
drops the same paths), and BatchNorm running statistics are updated once per step, not
again by the recomputation.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


@contextlib.contextmanager
def _statistics_frozen(module: nn.Module):
    """BatchNorm layers of ``module`` leave their running statistics (and batch count) as
    they are: the recomputation repeats a forward whose update already happened."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            saved.append((m, m.momentum, m.num_batches_tracked.clone()))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, count in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def _checkpointed(block: nn.Module, x: Tensor) -> Tensor:
    calls = []

    def run(inp: Tensor) -> Tensor:
        recompute = bool(calls)
        calls.append(1)
        with _statistics_frozen(block) if recompute else contextlib.nullcontext():
            return block(inp)

    return checkpoint(run, x, use_reentrant=False)


def run_stage(module: nn.Module, x: Tensor, checkpointed: bool, per_block: bool = True) -> Tensor:
    """``module(x)``; with ``checkpointed`` (in training, with gradients recorded) each block
    of an ``nn.Sequential`` stage (``per_block``), or the module as one, is checkpointed."""
    if not (checkpointed and torch.is_grad_enabled() and module.training):
        return module(x)
    blocks = list(module) if per_block and isinstance(module, nn.Sequential) else [module]
    for block in blocks:
        x = _checkpointed(block, x)
    return x
