"""Auto batch size: the largest batch whose worst-case training step fits in memory.

A detector's memory per image grows with its ground-truth count (anchor and proposal
assignment build [anchors x objects] IoU matrices), so a probe on a random batch can pick a
size that fails on the first crowded batch. At the start of fit this callback builds a
synthetic batch that is worst in both respects: every image at the largest training size
(``aug.train_sizes``' largest short side, the dataset's widest aspect ratio, capped at
``aug.max_size``) with the dataset's largest object count (boxes spread over the image,
labels cycling through the classes). It runs full training steps on it (forward, backward
and an optimizer step, under the trainer's precision) at batch sizes 1, 2, 4, ... until one
does not fit, then bisects between the last fit and the first failure, with an optimizer of
its own built as the run's is. It runs at set-up, before the run's optimizer, LR schedule
and data loaders exist, so the schedule's length and every loader follow the size found
(and an LR finder sweeps at it); weights and random state are restored afterwards, so
training starts as if nothing had run.

"Fits": on CUDA, no out-of-memory error and an allocator peak at most ``headroom`` x the
device's memory (or ``memory_budget_mb`` when set); on CPU the peak of live tensor memory
(parameters plus what the step allocates, visdet.bench.measure) at most
``memory_budget_mb``, which must then be given. The result is written to
``batch_size_finder.json`` (every trial with its peak) and, unless ``apply=false``, becomes
``data.batch_size``. One process only: with several devices, find the size on one and set
``data.batch_size``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from visdet.bench.measure import _LiveTensorBytes
from visdet.io.atomic_write import write_text_atomic
from visdet.lightning.rng_state import capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)


def search_batch_size(
    fits: Callable[[int], bool], start: int = 1, limit: int = 256
) -> tuple[int, list[int]]:
    """(largest batch size in [start, limit] with ``fits``, the sizes tried in order), for a
    ``fits`` that is monotone (true up to some size, false above): doubling from ``start``,
    then bisection. 0 when even ``start`` does not fit."""
    tried: list[int] = []

    def probe(n: int) -> bool:
        tried.append(n)
        return fits(n)

    if not probe(start):
        return 0, tried
    good, bad = start, None
    while good < limit:
        n = min(good * 2, limit)
        if probe(n):
            good = n
        else:
            bad = n
            break
    if bad is None:
        return good, tried
    while bad - good > 1:
        mid = (good + bad) // 2
        if probe(mid):
            good = mid
        else:
            bad = mid
    return good, tried


def worst_case_shape(
    aspect_ratios: list[float], train_sizes: list[int], max_size: int
) -> tuple[int, int]:
    """(H, W) of the largest training image: the largest short side with the widest or
    tallest aspect ratio of the dataset, the long side capped at ``max_size`` (the resize
    rule of visdet.ops.resize)."""
    short = max(train_sizes)
    best = (0, 0)
    for ratio in aspect_ratios or [1.0]:
        h, w = (1.0, ratio) if ratio >= 1 else (1.0 / ratio, 1.0)  # short side 1
        scale = min(short, max_size / max(h, w))
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if size[0] * size[1] > best[0] * best[1]:
            best = size
    return best


def worst_case_batch(
    batch_size: int, shape: tuple[int, int], num_objects: int, num_classes: int, device
) -> tuple[list[torch.Tensor], list[dict]]:
    """``batch_size`` random images of ``shape`` with ``num_objects`` boxes each (a grid of
    overlapping boxes of a few sizes over the whole image; labels cycle over the classes)."""
    h, w = shape
    gen = torch.Generator().manual_seed(0)
    n = max(1, num_objects)
    side = math.ceil(math.sqrt(n))
    i = torch.arange(n, dtype=torch.float32)
    cx = ((i % side) + 0.5) / side * w
    cy = (torch.div(i, side, rounding_mode="floor") + 0.5) / side * h
    scale = 1.0 + (i % 3)  # three box sizes, each larger than its grid cell
    bw, bh = (w / side * scale).clamp(min=2.0), (h / side * scale).clamp(min=2.0)
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    boxes = torch.minimum(boxes.clamp(min=0.0), torch.tensor([w, h, w, h], dtype=torch.float32))
    labels = (torch.arange(n) % num_classes) + 1
    images, targets = [], []
    for _ in range(batch_size):
        images.append(torch.rand(3, h, w, generator=gen).to(device))
        targets.append(
            {"boxes": boxes[:num_objects].to(device), "labels": labels[:num_objects].to(device)}
        )
    return images, targets


class BatchSizeFinder(L.Callback):
    """See the module docstring.

    Args:
        max_batch_size: the largest size tried.
        start: the first size tried.
        memory_budget_mb: the memory a step may use (required on CPU; on CUDA overrides
            ``headroom``).
        headroom: the fraction of the GPU's memory a step may use (CUDA).
        apply: set ``data.batch_size`` to the result; False only reports it.
        output_dir: where ``batch_size_finder.json`` goes (default: the trainer's root dir).
    """

    def __init__(
        self,
        max_batch_size: int = 256,
        start: int = 1,
        memory_budget_mb: float | None = None,
        headroom: float = 0.9,
        apply: bool = True,
        output_dir: str | None = None,
    ) -> None:
        if not 1 <= start <= max_batch_size:
            raise ValueError(
                "callbacks.batch_size: need 1 <= start <= max_batch_size, got "
                f"{start}, {max_batch_size}"
            )
        if not 0 < headroom <= 1:
            raise ValueError(f"callbacks.batch_size.headroom must be in (0, 1], got {headroom}")
        if memory_budget_mb is not None and memory_budget_mb <= 0:
            raise ValueError(
                f"callbacks.batch_size.memory_budget_mb must be > 0, got {memory_budget_mb}"
            )
        self.max_batch_size, self.start = max_batch_size, start
        self.memory_budget_mb, self.headroom = memory_budget_mb, headroom
        self.apply, self.output_dir = apply, output_dir
        self.result: dict | None = None

    # -- the worst case -----------------------------------------------------------------
    def worst_case(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        """{"shape": (H, W), "objects": N}: the largest training image and object count."""
        dm = trainer.datamodule
        train_set = dm.train_set
        objects = max((len(t["labels"]) for t in train_set.targets), default=0)
        augment = pl_module.augment
        shape = worst_case_shape(
            train_set.aspect_ratios(), list(augment.train_sizes), augment.max_size
        )
        return {"shape": shape, "objects": objects}

    def budget_mb(self, device: torch.device) -> float:
        if self.memory_budget_mb is not None:
            return float(self.memory_budget_mb)
        if device.type == "cuda":
            return self.headroom * torch.cuda.get_device_properties(device).total_memory / 2**20
        raise ValueError(
            "callbacks.batch_size.memory_budget_mb must be set when training on "
            f"{device.type} (only a CUDA device reports its memory)"
        )

    def step_peak_mb(self, trainer, pl_module, optimizer, batch) -> float | None:
        """Peak memory (MiB) of one training step on ``batch``; None when it ran out."""
        device = pl_module.device
        optimizer.zero_grad(set_to_none=True)

        def step() -> None:
            with trainer.precision_plugin.forward_context():
                loss = sum(pl_module.detector(*batch).values())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        try:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                step()
                torch.cuda.synchronize(device)
                return torch.cuda.max_memory_allocated(device) / 2**20
            tracker = _LiveTensorBytes()
            with tracker:
                step()
            resident = sum(p.numel() * p.element_size() for p in pl_module.parameters())
            return (resident + tracker.peak) / 2**20
        except torch.cuda.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            return None

    # -- the search ---------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.ckpt_path is not None:
            rank_zero_info("Batch size finder: resuming from a checkpoint, search skipped")
            return
        if trainer.world_size > 1:
            raise RuntimeError(
                "callbacks.batch_size: the batch size search runs on one device; run it with "
                "trainer.devices=1, then set data.batch_size for the multi-device run"
            )
        if not hasattr(pl_module, "detector") or not hasattr(pl_module, "optimizer_params"):
            raise TypeError(
                f"batch size finder: {type(pl_module).__name__} has no detector / optimizer_params"
            )
        pl_module.to(trainer.strategy.root_device)  # where the run will train
        budget = self.budget_mb(pl_module.device)
        worst = self.worst_case(trainer, pl_module)
        num_classes = pl_module.detector.num_classes
        saved = {
            "model": copy.deepcopy(pl_module.state_dict()),
            "rng": capture_rng_state(),
            "training": pl_module.training,
        }
        optimizer = pl_module.optimizer_factory(pl_module.optimizer_params())
        trials: list[dict] = []

        def fits(n: int) -> bool:
            batch = worst_case_batch(
                n, worst["shape"], worst["objects"], num_classes, pl_module.device
            )
            peak = self.step_peak_mb(trainer, pl_module, optimizer, batch)
            ok = peak is not None and peak <= budget
            trials.append({"batch_size": n, "peak_mb": peak, "fits": ok})
            log.info(
                "batch size %d: peak %s MiB (%s)",
                n,
                "OOM" if peak is None else f"{peak:.0f}",
                "fits" if ok else "too large",
            )
            return ok

        pl_module.train()
        try:
            found, _ = search_batch_size(fits, self.start, self.max_batch_size)
        finally:
            pl_module.load_state_dict(saved["model"])
            restore_rng_state(saved["rng"])
            pl_module.train(saved["training"])
            optimizer.zero_grad(set_to_none=True)
        if found == 0:
            raise RuntimeError(
                f"callbacks.batch_size: even batch size {self.start} of the worst case "
                f"({worst['objects']} objects, {worst['shape'][0]}x{worst['shape'][1]} px) needs "
                f"more than the budget of {budget:.0f} MiB"
            )
        self.result = {
            "batch_size": found,
            "previous_batch_size": trainer.datamodule.batch_size,
            "applied": self.apply,
            "budget_mb": budget,
            "worst_case": {"objects": worst["objects"], "image_size": list(worst["shape"])},
            "device": str(pl_module.device),
            "trials": trials,
        }
        out = Path(self.output_dir or trainer.default_root_dir)
        write_text_atomic(out / "batch_size_finder.json", json.dumps(self.result, indent=2) + "\n")
        if self.apply:
            trainer.datamodule.batch_size = found
        rank_zero_info(
            f"Batch size finder: {found} images per batch fit the worst case "
            f"({worst['objects']} objects at {worst['shape'][0]}x{worst['shape'][1]} px) in "
            f"{budget:.0f} MiB" + ("" if self.apply else " (not applied)")
        )
