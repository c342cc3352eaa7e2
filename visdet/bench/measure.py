"""How one thing is measured: wall time (warm-up, then median and interquartile range),
FLOPs (torch.utils.flop_counter) and peak memory.

- Time: ``fn`` runs ``warmup`` times unmeasured, then ``repeats`` times; on CUDA the device
  is synchronised before and after each repeat so queued kernels are counted.
- Parts: ``PartTimes`` adds the forward time of named sub-modules (forward pre-/post-hooks)
  within each call that ``time_ms`` times; medians over the timed calls.
- FLOPs: ``FlopCounterMode`` counts 2 FLOPs per multiply-add; ``macs = flops / 2``.
- Memory: on CUDA the allocator's peak (``max_memory_allocated``) above what was allocated
  before; on CPU the peak of live tensor bytes that ``fn`` allocated (every op's output
  storages, tracked until they are freed; scratch memory inside a kernel is not seen), in a
  separate, untimed pass.
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
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


class PartTimes:
    """Forward wall time of named sub-modules within each call of a function, from forward
    pre- and post-hooks (removed on exit). ``time_ms(parts.wrap(fn), ...)`` times the calls;
    ``parts.medians(n)`` is each part's median (ms) over the last ``n`` calls (the timed
    ones; warm-up calls come first). Without parts ``wrap`` returns ``fn`` unchanged."""

    def __init__(self, parts: dict[str, torch.nn.Module], device: str | torch.device = "cpu"):
        self.parts, self.device = parts, torch.device(device)
        self.calls: list[dict[str, float]] = []
        self._start: dict[str, float] = {}
        self._handles: list = []

    def __enter__(self) -> PartTimes:
        for name, module in self.parts.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(name, True)))
            self._handles.append(module.register_forward_hook(self._hook(name, False)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str, begin: bool) -> Callable:
        def hook(*_):
            _sync(self.device)
            now = time.perf_counter()
            if begin:
                self._start[name] = now
            else:
                self.calls[-1][name] += (now - self._start[name]) * 1000

        return hook

    def wrap(self, fn: Callable[[], object]) -> Callable[[], object]:
        if not self.parts:
            return fn

        def call():
            self.calls.append(dict.fromkeys(self.parts, 0.0))
            return fn()

        return call

    def medians(self, last: int) -> dict[str, float]:
        calls = self.calls[-last:]
        return {name: statistics.median(c[name] for c in calls) for name in self.parts}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (2 per multiply-add; ops without a formula count 0)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


class _LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of CPU tensor storages that ops create while active and that are
    still alive: a storage is added when an op returns it and removed (by a weakref
    finalizer) when it is freed, so ``peak`` is the high-water mark of tensor memory."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.storages: set[int] = set()

    def _freed(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self.storages.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0 or key in self.storages:
                continue
            self.storages.add(key)
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, nbytes)
        return out


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
    tracker = _LiveTensorBytes()
    with tracker:
        fn()
    return tracker.peak / 2**20, "cpu_tensor_peak"
