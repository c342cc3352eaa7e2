"""Model EMA: an exponential moving average of the detector's weights, evaluated beside the
raw weights at every validation; the better of the two is what a checkpoint keeps.

After optimizer step ``n`` (counted in updates, so gradient accumulation counts once per
step) every floating-point tensor of the state dict (parameters and normalisation
statistics) becomes

    ema = d_n * ema + (1 - d_n) * model,   d_n = decay * (1 - exp(-n / warmup_steps))

(the warm-up of YOLOv5 / YOLOX / Ultralytics: early averages follow the fast-moving weights,
later ones average over about ``1 / (1 - decay)`` steps); integer tensors are copied.

Validation runs both weights on the same batches: ``val_raw/*`` and ``val_ema/*`` record
both, ``val/*`` (what the checkpoint monitors and a sweep optimises) reports the better by
mAP, and ``val/ema_selected`` says which it was. A checkpoint's ``state_dict`` holds the
selected weights, so ``visdet eval``/``predict``/``export``, the final test and
``model.safetensors`` use them unchanged; ``checkpoint["ema"]`` holds the other weights and
the update count, so a resumed run continues both exactly.
"""

from __future__ import annotations

import copy
import math

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

PREFIX = "detector."


def ema_decay(decay: float, warmup_steps: float, updates: int) -> float:
    """The averaging factor of update number ``updates`` (1, 2, ...)."""
    if warmup_steps <= 0:
        return decay
    return decay * (1.0 - math.exp(-updates / warmup_steps))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, d: float) -> None:
    """``ema = d * ema + (1 - d) * model`` for every floating-point state tensor; others are
    copied."""
    model_state = model.state_dict()
    floats, targets = [], []
    for name, value in ema.state_dict().items():
        source = model_state[name].detach()
        if value.dtype.is_floating_point:
            floats.append(value)
            targets.append(source.to(value.dtype))
        else:
            value.copy_(source)
    if floats:
        torch._foreach_lerp_(floats, targets, 1.0 - d)


class ModelEMA(L.Callback):
    """Keep and evaluate an exponential moving average of ``pl_module.detector``.

    Args:
        decay: the averaging factor after warm-up, in [0, 1) (0.9998: an average over about
            5,000 steps, for schedules of tens of thousands of steps; short runs want less,
            e.g. 0.995 for 600 steps).
        warmup_steps: the warm-up's time constant in optimizer steps (0: none).

    Each validation costs one more inference pass (the EMA weights on the same batches).
    """

    def __init__(self, decay: float = 0.9998, warmup_steps: float = 2000):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"callbacks.ema.decay must be in [0, 1), got {decay}")
        if warmup_steps < 0:
            raise ValueError(f"callbacks.ema.warmup_steps must be >= 0, got {warmup_steps}")
        self.decay = float(decay)
        self.warmup_steps = float(warmup_steps)
        self.updates = 0
        self.ema: nn.Module | None = None
        self._last_step = -1
        self._restored: dict[str, Tensor] | None = None
        self._metric = None

    # -- the average ----------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ema = copy.deepcopy(pl_module.detector).eval().requires_grad_(False)
        if self._restored is not None:
            self.ema.load_state_dict(self._restored)
            self._restored = None
        self._last_step = trainer.global_step
        rank_zero_info(
            f"ema: decay {self.decay}, warm-up {self.warmup_steps:g} steps, "
            f"{self.updates} updates so far"
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._last_step:
            return  # accumulating gradients: no optimizer step yet
        self._last_step = trainer.global_step
        self.updates += 1
        d = ema_decay(self.decay, self.warmup_steps, self.updates)
        ema_update(self.ema, pl_module.detector, d)

    # -- evaluation -----------------------------------------------------------------------
    def _evaluating(self, trainer: L.Trainer) -> bool:
        return self.ema is not None and not trainer.sanity_checking

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self._evaluating(trainer):
            self._metric = pl_module.new_metric()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        images, targets = batch
        if self._evaluating(trainer) and images:
            self.ema.eval()
            # the precision the module's validation step runs in (autocast for *-mixed)
            with torch.no_grad(), trainer.precision_plugin.val_step_context():
                pl_module.update_metric(self._metric, self.ema, images, targets)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        # runs before the module's hook, which logs both and selects the better
        if self._evaluating(trainer) and self._metric is not None:
            pl_module.ema_results = self._metric.compute()
            self._metric = None

    # -- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self.ema is None:
            return
        selected = pl_module.selected_weights
        state = checkpoint["state_dict"]
        ema_state = {PREFIX + k: v for k, v in self.ema.state_dict().items()}
        if selected == "ema":  # the checkpoint's weights become the EMA; the raw ones go aside
            other = {k: state[k] for k in ema_state}
            state.update(ema_state)
        else:
            other = ema_state
        checkpoint["ema"] = {
            "selected": selected,
            "updates": self.updates,
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
            "state_dict": {k[len(PREFIX) :]: v.detach().clone() for k, v in other.items()},
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return  # evaluating a checkpoint: its state_dict is the selected weights
        saved = checkpoint.get("ema")
        if saved is None:
            rank_zero_info("ema: the checkpoint has no EMA; the average starts from its weights")
            return
        self.updates = int(saved["updates"])
        pl_module.selected_weights = saved["selected"]
        if saved["selected"] == "ema":  # the module loaded the EMA: put the raw weights back
            self._restored = {k: v.clone() for k, v in pl_module.detector.state_dict().items()}
            pl_module.detector.load_state_dict(saved["state_dict"])
        else:
            self._restored = saved["state_dict"]
