"""Training profiler: per-component forward/backward time, data wait vs compute, throughput
and memory over the steps of a fit; at the end of fit (rank zero) visdet.bench JSON of kind
"training" and a PNG of the same stem go into ``trainer.default_root_dir``.

Sampled steps: after ``skip_first_steps`` warm-up batches, every ``every_n_steps``-th batch.
- compute: on_train_batch_start -> on_train_batch_end (forward, backward, optimizer step);
  data wait: previous on_train_batch_end -> on_train_batch_start (loader, host-to-device copy
  and the module's on-device augmentation, which Lightning runs before the batch starts); not
  measured across epoch ends or validation. CUDA is synchronised at these boundaries.
- forward of a component: forward pre-hook -> forward hook, summed over calls in a step.
- backward of a component: from the first gradient reaching one of its output tensors
  (``Tensor.register_hook``; outputs nested in dicts/lists included) to the last gradient
  leaving it, at its trainable parameters (``register_post_accumulate_grad_hook``) or inputs.
  Inputs that require grad are swapped in the pre-hook for an alias (``x.view_as(x)``) whose
  hook fires when this component's share of their gradient is done. nn.Module full backward
  hooks are not used: they only see top-level tensors and never fire for the detector's
  stages (OrderedDict features, lists, dicts of losses). Autograd runs the latest-created
  nodes first, so stages applied one after another get disjoint spans; for parallel branches
  a span may include work of the other branch.
- clocks: ``time.perf_counter`` on CPU; CUDA events on CUDA (read after the step-end sync).
- memory per step: the CUDA allocator's peak (reset at step start, so other readers of
  ``max_memory_allocated`` see the peak since the last sampled step), or on CPU the process's
  current resident set (/proc/self/statm; the peak resident set where that is missing).
- overhead: the time spent inside this callback's hooks, as a fraction of the sampled steps.
Hooks exist only from on_train_start to on_train_end (or teardown); without the callback
nothing is registered.
"""

from __future__ import annotations

import io
import logging
import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch import nn

from visdet.bench.measure import summarize
from visdet.bench.schema import new_run, save_run
from visdet.io.atomic_write import write_bytes_atomic

log = logging.getLogger(__name__)
BACKWARD = "span from the first gradient at an output to the last input/parameter gradient"


def default_components(pl_module: nn.Module) -> list[str]:
    """Detector stages, encoder + head, or else the module's top-level children."""
    if hasattr(pl_module, "detector"):
        parts = ("backbone", "neck", "rpn", "roi_heads")
        return [f"detector.{p}" for p in parts if hasattr(pl_module.detector, p)]
    if hasattr(pl_module, "encoder"):
        return [p for p in ("encoder", "head") if hasattr(pl_module, p)]
    return [name for name, _ in pl_module.named_children()]


def resolve_component(pl_module: nn.Module, path: str) -> nn.Module:
    module, prefix = pl_module, ""
    for part in path.split("."):
        children = dict(module.named_children())
        if part not in children:
            where = f" under {prefix[:-1]!r}" if prefix else ""
            raise ValueError(
                f"callbacks.benchmark.components: {path!r} is not a submodule of "
                f"{type(pl_module).__name__}; available{where}: "
                + (", ".join(prefix + name for name in children) or "(none)")
            )
        module, prefix = children[part], f"{prefix}{part}."
    return module


def count_images(batch) -> tuple[int, str | None]:
    """(samples in a batch, shape of the first), for ``{"images": ...}``, ``(images, ...)`` or
    a tensor; images are a list of ``[C,H,W]`` tensors or one batch-first tensor."""
    images = batch.get("images") if isinstance(batch, dict) else batch
    first = images[0] if isinstance(images, (list, tuple)) and images else None
    if isinstance(first, (list, tuple)) or isinstance(first, torch.Tensor) and first.dim() != 3:
        images = first  # (images, targets or labels)
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:  # one [C,H,W] image
            return 1, "x".join(map(str, images.shape))
        return (int(images.shape[0]) if images.dim() else 1), "x".join(map(str, images.shape[1:]))
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], torch.Tensor):
        return len(images), "x".join(map(str, images[0].shape))
    return 0, None


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple, dict)):
        for item in obj.values() if isinstance(obj, dict) else obj:
            yield from _tensors(item)


def _alias(obj, hook):
    """``obj`` with every tensor that requires grad replaced by a hooked alias."""
    if isinstance(obj, torch.Tensor):
        if not obj.requires_grad:
            return obj
        alias = obj.view_as(obj)
        alias.register_hook(hook)
        return alias
    if isinstance(obj, dict):
        return type(obj)((k, _alias(v, hook)) for k, v in obj.items())
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_alias(v, hook) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_alias(v, hook) for v in obj)
    return obj


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # no procfs: the peak resident set instead
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _stats(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    return summarize(values) if values else None


class BenchmarkCallback(L.Callback):
    """See the module docstring.

    Args:
        components: dotted submodule paths of the LightningModule; default: the detector's
            backbone, neck, rpn, roi_heads (or encoder, head).
        every_n_steps: measure every n-th batch.
        skip_first_steps: warm-up batches left out of the statistics.
        filename: JSON file in ``trainer.default_root_dir``; the PNG gets its stem.
        plot: also write the PNG.
    """

    def __init__(
        self,
        components: Sequence[str] | None = None,
        every_n_steps: int = 1,
        skip_first_steps: int = 2,
        filename: str = "benchmark_training.json",
        plot: bool = True,
    ) -> None:
        if every_n_steps < 1 or skip_first_steps < 0:
            raise ValueError(
                "callbacks.benchmark: need every_n_steps >= 1 and skip_first_steps >= 0, got "
                f"{every_n_steps}, {skip_first_steps}"
            )
        if not filename.endswith(".json"):
            raise ValueError(f"callbacks.benchmark.filename must end in .json, got {filename!r}")
        self.components = list(components) if components is not None else None
        self.every_n_steps, self.skip_first_steps = every_n_steps, skip_first_steps
        self.filename, self.plot = filename, plot
        self.modules: dict[str, nn.Module] = {}
        self.records: list[dict] = []
        self._handles: list = []
        self._active, self._step, self._last_end, self._cuda = False, -1, None, None

    def _sampled(self, step: int) -> bool:
        return step >= self.skip_first_steps and (
            (step - self.skip_first_steps) % self.every_n_steps == 0
        )

    def _stamp(self):
        if self._cuda is None:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _ms(self, a, b) -> float:
        return a.elapsed_time(b) if self._cuda is not None else (b - a) * 1000

    def _sync(self) -> None:
        if self._cuda is not None:
            torch.cuda.synchronize(self._cuda)

    # -- hooks on the components ------------------------------------------------------------
    def _marker(self, name: str, which: str):
        def mark(*_) -> None:
            if self._active:
                t0 = time.perf_counter()
                if which == "end" or which not in self._bwd[name]:
                    self._bwd[name][which] = self._stamp()
                self._overhead += time.perf_counter() - t0

        return mark

    def _pre_hook(self, name: str):
        def hook(module, args, kwargs):
            if not self._active:
                return None
            t0 = time.perf_counter()
            if torch.is_grad_enabled():
                end = self._marker(name, "end")
                args, kwargs = _alias(args, end), _alias(kwargs, end)
            self._open[name] = self._stamp()
            self._overhead += time.perf_counter() - t0
            return args, kwargs

        return hook

    def _post_hook(self, name: str):
        def hook(module, args, output) -> None:
            if not self._active or name not in self._open:
                return
            stop = self._stamp()
            t0 = time.perf_counter()
            self._fwd[name].append((self._open.pop(name), stop))
            start = self._marker(name, "start")
            for t in _tensors(output):
                if t.requires_grad:
                    t.register_hook(start)
            self._overhead += time.perf_counter() - t0

        return hook

    # -- Lightning hooks -------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        names = self.components if self.components is not None else default_components(pl_module)
        self.modules = {name: resolve_component(pl_module, name) for name in names}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._cuda = pl_module.device if pl_module.device.type == "cuda" else None
        self.records, self._step, self._last_end = [], -1, None
        for name, module in self.modules.items():
            self._handles.append(
                module.register_forward_pre_hook(self._pre_hook(name), with_kwargs=True)
            )
            self._handles.append(module.register_forward_hook(self._post_hook(name)))
            end = self._marker(name, "end")
            for p in module.parameters():
                if p.requires_grad:
                    self._handles.append(p.register_post_accumulate_grad_hook(end))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step += 1
        if not self._sampled(self._step):
            return
        self._sync()  # queued augmentation work belongs to the data wait
        now = time.perf_counter()
        images, shape = count_images(batch)
        self._cur = {"step": self._step, "images": images, "input": shape}
        self._cur["data_wait_ms"] = (
            (now - self._last_end) * 1000 if self._last_end is not None else None
        )
        self._fwd = {n: [] for n in self.modules}
        self._bwd: dict[str, dict] = {n: {} for n in self.modules}
        self._open: dict = {}
        if self._cuda is not None:
            torch.cuda.reset_peak_memory_stats(self._cuda)
        self._overhead = time.perf_counter() - now
        self._active, self._start = True, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._active:
            self._sync()
            end = time.perf_counter()
            self._active, r = False, self._cur
            r["compute_ms"] = (end - self._start) * 1000
            r["forward_ms"] = {n: sum(self._ms(*s) for s in spans) if spans else None
                               for n, spans in self._fwd.items()}  # fmt: skip
            r["backward_ms"] = {n: self._ms(b["start"], b["end"]) if len(b) == 2 else None
                                for n, b in self._bwd.items()}  # fmt: skip
            cuda = self._cuda is not None
            r["memory_mb"] = (
                torch.cuda.max_memory_allocated(self._cuda) / 2**20 if cuda else _rss_mb()
            )
            r["overhead_ms"] = (self._overhead + time.perf_counter() - end) * 1000
            self.records.append(r)
        elif self._sampled(self._step + 1):
            self._sync()
        self._last_end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._last_end = None  # checkpointing and validation are not data wait

    on_validation_start = on_train_epoch_end

    def teardown(self, trainer, pl_module, stage: str | None = None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._active = [], False

    on_train_end = teardown

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if not self.records:
            log.warning("benchmark: no step measured (skip_first_steps=%d)", self.skip_first_steps)
            return
        run = self.build_run(pl_module)
        path = save_run(run, Path(trainer.default_root_dir) / self.filename)
        if self.plot:
            plot_run(run, path.with_suffix(".png"))
        step = run["results"][-1]
        wait = step["extra"]["data_wait_ms"]
        log.info(
            "benchmark: %d steps, compute %.1f ms, data wait %s ms, %.1f images/s, overhead "
            "%.2f%%; %s",
            len(self.records),
            step["forward_backward_ms"]["median"],
            f"{wait['median']:.1f}" if wait else "n/a",
            step["throughput"]["images_per_s"],
            100 * step["extra"]["overhead_fraction"],
            path,
        )

    def build_run(self, pl_module: nn.Module) -> dict:
        """The visdet.bench document (kind "training") of the recorded steps."""
        recs, cuda = self.records, self._cuda is not None
        images = [r["images"] for r in recs]
        memory = [[r["step"], r["memory_mb"]] for r in recs]
        batch = int(statistics.median(images))
        kind = "cuda_allocator_peak" if cuda else "cpu_process_rss"
        base = {"group": "training", "impl": "visdet", "case": f"b{batch}", "batch_size": batch,
                "input": recs[0]["input"], "flops": None, "macs": None, "throughput": None,
                "peak_memory_mb": max(m for _, m in memory), "memory_kind": kind}  # fmt: skip
        results = []
        for name, module in self.modules.items():
            fwd = [r["forward_ms"][name] for r in recs]
            bwd = [r["backward_ms"][name] for r in recs]
            both = [f + b for f, b in zip(fwd, bwd) if f is not None and b is not None]
            params = sum(p.numel() for p in module.parameters())
            extra = {"backward_ms": _stats(bwd), "backward": BACKWARD}
            results.append({**base, "component": f"train/{name}", "params": params,
                            "forward_ms": _stats(fwd), "forward_backward_ms": _stats(both),
                            "extra": extra})  # fmt: skip
        overhead = sum(r["overhead_ms"] for r in recs)
        fraction = overhead / (overhead + sum(r["compute_ms"] for r in recs))
        waited = [r for r in recs if r["data_wait_ms"] is not None] or recs
        step_ms = sum(r["compute_ms"] + (r["data_wait_ms"] or 0) for r in waited)
        throughput = {
            "images_per_s": 1000 * sum(r["images"] for r in waited) / step_ms,
            "compute_images_per_s": 1000 * sum(images) / sum(r["compute_ms"] for r in recs),
        }
        extra = {
            "compute_ms": _stats([r["compute_ms"] for r in recs]),
            "data_wait_ms": _stats([r["data_wait_ms"] for r in recs]),
            "overhead_ms": _stats([r["overhead_ms"] for r in recs]),
            "overhead_fraction": fraction,
            "images": sum(images),
            "memory_mb": memory,
            "note": "forward_backward_ms is the compute time: forward, backward, optimizer step",
        }
        params = sum(p.numel() for p in pl_module.parameters())
        results.append({**base, "component": "train/step", "params": params, "forward_ms": None,
                        "forward_backward_ms": extra["compute_ms"], "throughput": throughput,
                        "extra": extra})  # fmt: skip
        settings = {"components": list(self.modules), "every_n_steps": self.every_n_steps,
                    "skip_first_steps": self.skip_first_steps, "measured_steps": len(recs),
                    "timer": "cuda_events" if cuda else "perf_counter",
                    "overhead_fraction": fraction}  # fmt: skip
        run = new_run("training", settings, self._cuda or "cpu")
        run["results"] = results
        return run


def plot_run(run: dict, path: Path) -> None:
    """PNG of a training run: median forward/backward per component and step compute/data
    wait (bars), memory over the steps (line)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    *parts, step = run["results"]
    med = lambda s: s["median"] if s else 0.0  # noqa: E731
    fwd = [med(r["forward_ms"]) for r in parts]
    compute, wait = med(step["extra"]["compute_ms"]), med(step["extra"]["data_wait_ms"])
    fig = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(fig)
    bars, mem = fig.subplots(1, 2)
    y, n = list(range(len(parts))), len(parts)
    bars.barh(y, fwd, label="forward")
    bars.barh(y, [med(r["extra"]["backward_ms"]) for r in parts], left=fwd, label="backward")
    bars.barh([n], [compute], label="step compute (fwd+bwd+optimizer)")
    bars.barh([n], [wait], left=[compute], label="data wait")
    bars.set_yticks(y + [n], [r["component"] for r in parts] + ["train/step"])
    bars.invert_yaxis()
    bars.set_xlabel("median ms per step")
    bars.legend(fontsize=8)
    steps, mib = zip(*step["extra"]["memory_mb"], strict=True)
    mem.plot(steps, mib, marker=".")
    mem.set_xlabel("training step (batch)")
    mem.xaxis.get_major_locator().set_params(integer=True)
    mem.set_ylabel(f"MiB ({step['memory_kind']})")
    overhead = step["extra"]["overhead_fraction"]
    fig.suptitle(f"training benchmark, {step['case']}, profiler overhead {overhead:.2%}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes_atomic(path, buf.getvalue())
