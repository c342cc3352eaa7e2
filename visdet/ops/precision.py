"""Mixed precision boundaries: the dense layers (backbone, neck, head convs and linears) may
run in float16/bfloat16 under ``torch.autocast``; what comes after them (anchors, box coding,
matching, losses, NMS, post-processing, metrics) runs in float32.

``float32(x)`` casts half-precision head outputs (float16/bfloat16 tensors, or lists / tuples /
dicts of them) back to float32, leaving float32 and float64 as they are;
``autocast_off()`` switches autocast off for the float32 part, so that ops autocast would
lower (matmul, linear, ...) stay in float32 there too. Both do nothing outside autocast:
eager float32, TorchScript and torch.export graphs are unchanged.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

AUTOCAST_DEVICES = ("cpu", "cuda")
HALF = (torch.float16, torch.bfloat16)


def float32(x):
    """``x`` with every float16/bfloat16 tensor in float32 (same structure: a tensor, or a
    list / tuple / dict of them, nested)."""
    if isinstance(x, Tensor):
        return x.float() if x.dtype in HALF else x
    if isinstance(x, dict):
        return {k: float32(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(float32(v) for v in x)
    return x


def autocast_enabled() -> bool:
    """Whether autocast is on for any device (CPU or CUDA)."""
    return any(torch.is_autocast_enabled(d) for d in AUTOCAST_DEVICES)


def autocast_off() -> contextlib.AbstractContextManager:
    """A context with autocast switched off on every device where it is on (a no-op
    context when it is on nowhere)."""
    stack = contextlib.ExitStack()
    for device in AUTOCAST_DEVICES:
        if torch.is_autocast_enabled(device):
            stack.enter_context(torch.autocast(device_type=device, enabled=False))
    return stack
