"""Freeze-then-unfreeze: train the heads with the backbone frozen for the first epochs, then
everything (typically with discriminative LRs, whose groups already hold the backbone)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from torch import nn


class FreezeUnfreeze(L.Callback):
    """Freeze parameters under ``prefixes`` for ``frozen_epochs`` epochs.

    Frozen parameters get no gradient (the optimizer skips them) and their BatchNorm layers
    stay in eval mode; at epoch ``frozen_epochs`` they are released. Parameters that were
    already frozen (e.g. ``frozen_stages``) stay frozen.

    Args:
        frozen_epochs: epochs with the prefixes frozen (>= 1).
        prefixes: parameter-name prefixes inside the model's ``detector`` (or the module).
    """

    def __init__(self, frozen_epochs: int = 1, prefixes: tuple[str, ...] = ("backbone.",)) -> None:
        if frozen_epochs < 1:
            raise ValueError(
                f"callbacks.freeze_unfreeze.frozen_epochs must be >= 1, got {frozen_epochs}"
            )
        self.frozen_epochs = frozen_epochs
        self.prefixes = tuple(prefixes)
        self._released: list[nn.Parameter] = []

    @staticmethod
    def _model(pl_module: L.LightningModule) -> nn.Module:
        return getattr(pl_module, "detector", pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = self._model(pl_module)
        if trainer.current_epoch < self.frozen_epochs:
            if not self._released:
                self._released = [
                    p
                    for n, p in model.named_parameters()
                    if n.startswith(self.prefixes) and p.requires_grad
                ]
                if not self._released:
                    raise ValueError(
                        f"callbacks.freeze_unfreeze.prefixes {self.prefixes} match "
                        "no trainable parameter"
                    )
                for p in self._released:
                    p.requires_grad_(False)
                rank_zero_info(
                    f"freeze_unfreeze: {sum(p.numel() for p in self._released):,} "
                    f"parameters under {self.prefixes} frozen for "
                    f"{self.frozen_epochs} epoch(s)"
                )
            for name, m in model.named_modules():
                if name.startswith(tuple(p.rstrip(".") for p in self.prefixes)) and isinstance(
                    m, nn.modules.batchnorm._BatchNorm
                ):
                    m.eval()
        elif self._released:
            for p in self._released:
                p.requires_grad_(True)
            rank_zero_info(
                f"freeze_unfreeze: epoch {trainer.current_epoch}: "
                f"{sum(p.numel() for p in self._released):,} parameters released"
            )
            self._released = []
