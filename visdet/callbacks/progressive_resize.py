"""Progressive resizing (fastai): train on small images first, grow to full size, and spend
the last part of training at full size. Validation always runs at full size.

The size (short side, in pixels) for each epoch comes from ``schedule_sizes``; the callback
sets it on the module's device-side augmentation (``augment.size_override``) at the start of
every training epoch, so all processes use the same size at every step and boxes are scaled
with the images. It logs ``train/image_size``, records the peak device memory per size (CUDA)
and will not grow to a size whose predicted peak (memory scales with the pixel count) would
exceed ``memory_fraction`` of the device memory; it warns once and keeps the size that fits.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from visdet.lightning.schedulers import cosine_between

SCHEDULES = ("linear", "cosine")


def schedule_sizes(
    epochs: int,
    final_size: int,
    start_scale: float = 0.5,
    final_fraction: float = 0.2,
    step: int = 32,
    schedule: str = "linear",
) -> list[int]:
    """The training size of each epoch: from ``start_scale * final_size`` up to
    ``final_size`` (rounded down to multiples of ``step``, at least ``step``); the last
    ``final_fraction`` of the epochs (at least one) at ``final_size``."""
    if schedule not in SCHEDULES:
        raise ValueError(
            f"progressive_resize.schedule must be one of {SCHEDULES}, got {schedule!r}"
        )
    if final_size % step or step % 32:
        raise ValueError(
            f"progressive_resize: final_size ({final_size}) and step ({step}) must "
            "be multiples of 32 so FPN strides stay valid"
        )
    if not 0 < start_scale <= 1:
        raise ValueError(f"progressive_resize.start_scale must be in (0, 1], got {start_scale}")
    if not 0 <= final_fraction <= 1:
        raise ValueError(
            f"progressive_resize.final_fraction must be in [0, 1], got {final_fraction}"
        )
    if epochs < 1:
        raise ValueError(f"progressive_resize needs a known number of epochs, got {epochs}")
    full = max(1, math.ceil(epochs * final_fraction))
    growing = epochs - full
    start = max(step, int(start_scale * final_size) // step * step)
    sizes = []
    for e in range(growing):
        t = e / max(1, growing)
        if schedule == "cosine":
            size = cosine_between(start, final_size, t)
        else:
            size = start + t * (final_size - start)
        sizes.append(max(step, int(size) // step * step))
    return sizes + [final_size] * full


class ProgressiveResize(L.Callback):
    """See the module docstring.

    Args:
        final_size: full training size (short side); default: the largest of the module's
            ``augment.train_sizes``. Must be a multiple of 32.
        start_scale: first size as a fraction of ``final_size``.
        final_fraction: fraction of the epochs trained at ``final_size``.
        step: size increment (a multiple of 32).
        schedule: ``linear`` or ``cosine`` growth.
        memory_fraction: largest share of the device memory a size may be predicted to need.
    """

    def __init__(
        self,
        final_size: int | None = None,
        start_scale: float = 0.5,
        final_fraction: float = 0.2,
        step: int = 32,
        schedule: str = "linear",
        memory_fraction: float = 0.9,
    ) -> None:
        if final_size is not None:
            schedule_sizes(1, final_size, start_scale, final_fraction, step, schedule)
        elif schedule not in SCHEDULES:
            raise ValueError(
                f"progressive_resize.schedule must be one of {SCHEDULES}, got {schedule!r}"
            )
        self.final_size, self.start_scale, self.final_fraction = (
            final_size,
            start_scale,
            final_fraction,
        )
        self.step, self.schedule, self.memory_fraction = step, schedule, memory_fraction
        self.sizes: list[int] = []
        self.peak_memory: dict[int, int] = {}
        self._capped_at: int | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        augment = getattr(pl_module, "augment", None)
        if augment is None or not hasattr(augment, "size_override"):
            raise TypeError("progressive_resize needs a module with a device-side `augment`")
        final = self.final_size or max(augment.train_sizes)
        self.sizes = schedule_sizes(
            trainer.max_epochs,
            final,
            self.start_scale,
            self.final_fraction,
            self.step,
            self.schedule,
        )
        rank_zero_info(f"progressive resizing, size per epoch: {self.sizes}")

    def _fits(self, size: int, device: torch.device) -> bool:
        if device.type != "cuda" or not self.peak_memory:
            return True
        measured = max(self.peak_memory)
        predicted = self.peak_memory[measured] * (size / measured) ** 2
        return (
            predicted
            <= self.memory_fraction * torch.cuda.get_device_properties(device).total_memory
        )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = min(trainer.current_epoch, len(self.sizes) - 1)
        size = self.sizes[epoch]
        if self._capped_at is not None or not self._fits(size, pl_module.device):
            if self._capped_at is None:
                self._capped_at = max(self.peak_memory)
                rank_zero_warn(
                    f"progressive_resize: size {size} is predicted not to fit in "
                    f"device memory; staying at {self._capped_at}"
                )
            size = min(size, self._capped_at)
        pl_module.augment.size_override = size
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pl_module.log(
            "train/image_size",
            float(pl_module.augment.size_override or 0),
            on_step=True,
            on_epoch=False,
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        size = pl_module.augment.size_override
        if pl_module.device.type == "cuda" and size is not None:
            peak = torch.cuda.max_memory_allocated(pl_module.device)
            self.peak_memory[size] = max(self.peak_memory.get(size, 0), peak)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.augment.size_override = None
        if self.peak_memory:
            table = ", ".join(
                f"{s}px: {m / 2**20:.0f} MiB" for s, m in sorted(self.peak_memory.items())
            )
            rank_zero_info(f"progressive resizing peak memory per size: {table}")
