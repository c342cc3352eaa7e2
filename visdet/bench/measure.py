"""How one thing is measured: wall time (warm-up, then median and interquartile range),
FLOPs (torch.utils.flop_counter) and peak memory.

- Time: ``fn`` runs ``warmup`` times unmeasured, then ``repeats`` times; on CUDA the device
  is synchronised before and after each repeat so queued kernels are counted.
- FLOPs: ``FlopCounterMode`` counts 2 FLOPs per multiply-add; ``macs = flops / 2``.
- Memory: on CUDA the allocator's peak (``max_memory_allocated``) above what was allocated
  before; on CPU the peak of live tensor bytes allocated during ``fn``, from the profiler's
  memory events (``torch.profiler``, ``profile_memory=True``), in a separate, untimed pass
  (an approximation: allocations are placed at their op's start).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode


def summarize(times_ms: list[float]) -> dict:
    """{"median", "q1", "q3", "iqr", "repeats"} of a list of milliseconds."""
    if not times_ms:
        raise ValueError("summarize: no times")
    if len(times_ms) >= 2:
        q1, _, q3 = statistics.quantiles(times_ms, n=4, method="inclusive")
    else:
        q1 = q3 = times_ms[0]
    return {
        "median": statistics.median(times_ms),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "repeats": len(times_ms),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, device: str | torch.device = "cpu"
) -> dict:
    """Wall-time statistics of ``fn()`` in milliseconds."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return summarize(times)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (2 per multiply-add; ops without a formula count 0)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: the profiler's C++ backend logs every start and stop there
    (Python exceptions are printed later, after the descriptor is restored)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory_mb(
    fn: Callable[[], object], device: str | torch.device = "cpu"
) -> tuple[float, str]:
    """(peak MiB allocated during one call of ``fn``, how it was measured)."""
    device = torch.device(device)
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20, "cuda_allocator_peak"
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        # frees of tensors that existed before ``fn`` (e.g. old gradients) cannot take the
        # count below where it started
        live = max(0, live + event.self_cpu_memory_usage)
        peak = max(peak, live)
    return peak / 2**20, "cpu_tensor_peak"
