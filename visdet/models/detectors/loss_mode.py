"""Detector losses on held-out data (validation loss), without training side effects.

A detector returns its losses only in training mode, but training mode also changes what
normalisation and dropout layers do (BatchNorm updates its running statistics, dropout drops)
and draws random numbers (proposal sampling, a random training size). ``loss_mode`` switches
every submodule to training mode except those layers, and runs on a forked random-number
state seeded by the caller, so computing a validation loss neither changes the weights'
statistics nor the training run's random streams, and gives the same value every time.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import torch
from torch import nn

# layers whose training-mode behaviour is not wanted when only the losses are
EVAL_BEHAVIOUR = (nn.modules.batchnorm._NormBase, nn.modules.dropout._DropoutNd, nn.Dropout)


@contextlib.contextmanager
def loss_mode(detector: nn.Module, seed: int = 0) -> Iterator[nn.Module]:
    """Within the block, ``detector(images, targets)`` returns its dict of losses computed
    as in training, with normalisation and dropout layers in eval mode and torch's random
    generators (CPU and the detector's CUDA device) and Python's ``random`` (the training
    size draw) forked and seeded with ``seed``; every module's mode and the generators'
    states are restored afterwards."""
    modes = {m: m.training for m in detector.modules()}
    python_state = random.getstate()
    devices = [p.device for p in detector.parameters() if p.device.type == "cuda"][:1]
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            random.seed(seed)
            for m in detector.modules():
                m.training = not isinstance(m, EVAL_BEHAVIOUR)
            yield detector
    finally:
        random.setstate(python_state)
        for m, mode in modes.items():
            m.training = mode
