"""``model.compile=true``: torch.compile of a detector's dense parts, with size buckets.

The parts whose work is dense tensor algebra with shapes set by the image size (backbone,
neck, the heads' convolutions and fully connected layers) are compiled in place
(``nn.Module.compile``: parameter names and checkpoints stay the same); the data-dependent
glue between them (anchors, proposal selection, sampling, NMS, losses) stays eager, as
torch.compile would break its graph there anyway. Each family lists its parts in
``COMPILE_TARGETS`` (module paths).

Size buckets: a compiled graph is specialised to its input shapes and recompiled for a new
one, so the batch is padded to a multiple of ``bucket`` pixels (instead of the transform's
``size_divisible``): multi-scale training and progressive resizing then meet a few shapes,
each compiled once. Shapes that still vary (the number of RoIs at inference) are left to
torch.compile's automatic dynamic shapes (a second shape recompiles once with a symbolic
size).
"""

from __future__ import annotations

import math

from torch import nn

DEFAULT_TARGETS = ("backbone", "neck")


def compile_targets(detector: nn.Module) -> tuple[str, ...]:
    """The module paths of ``detector`` that ``compile_detector`` compiles."""
    return tuple(getattr(detector, "COMPILE_TARGETS", DEFAULT_TARGETS))


def compile_detector(
    detector: nn.Module, bucket: int = 64, mode: str | None = None, backend: str = "inductor"
) -> list[str]:
    """Compile ``detector``'s dense parts in place (torch.compile ``mode`` and ``backend``)
    and pad its batches to multiples of ``bucket`` px; returns the compiled module paths."""
    if not isinstance(bucket, int) or isinstance(bucket, bool) or bucket < 1:
        raise ValueError(f"model.compile_bucket must be a positive int (pixels), got {bucket!r}")
    compiled = []
    for path in compile_targets(detector):
        try:
            module = detector.get_submodule(path)
        except AttributeError:
            continue  # a variant without that part (e.g. a detector without a neck)
        module.compile(mode=mode, backend=backend)
        compiled.append(path)
    transform = getattr(detector, "transform", None)
    if transform is not None:
        transform.size_divisible = math.lcm(transform.size_divisible, bucket)
    return compiled


def is_compiled(module: nn.Module) -> bool:
    """True when ``module`` was compiled in place (``nn.Module.compile``)."""
    return getattr(module, "_compiled_call_impl", None) is not None


__all__ = ["compile_detector", "compile_targets", "is_compiled"]
