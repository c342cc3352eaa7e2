"""LightningModule: fine-tune an image encoder with a linear classification head.

logits = Linear(global_avg_pool(encoder(images))). The encoder's weights are saved under
``encoder.backbone.*``, so a fine-tuned checkpoint can initialise an encoder for export
(``encoder.init_from=...``) like a detector checkpoint can.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from visdet.lightning.training_module import TrainingModule
from visdet.models.encoders import GeneralEncoder
from visdet.models.post_encoder import global_avg_pool


class EncoderModule(TrainingModule):
    """Args:
    encoder: the GeneralEncoder to fine-tune.
    num_classes: classes of the linear head (the datamodule's classes; filled in by the run).
    optimizer: a partial optimizer called with the trainable parameters.
    scheduler: a partial schedule called with (optimizer, total_steps), or None.
    freeze_encoder: train only the head (a linear probe).
    hflip: random horizontal flips of training images (on the device).
    label_smoothing: cross-entropy label smoothing.
    """

    def __init__(
        self,
        encoder: GeneralEncoder,
        num_classes: int,
        optimizer: Callable,
        scheduler: Callable | None = None,
        freeze_encoder: bool = False,
        hflip: bool = True,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"model.num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.encoder = encoder
        self.head = nn.Linear(encoder.out_channels, num_classes)
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.freeze_encoder = freeze_encoder
        self.hflip = hflip
        self.label_smoothing = label_smoothing
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
        self.val_accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.last_results: dict[str, float] = {}

    def forward(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [0, 1] -> logits [B, num_classes]."""
        return self.head(global_avg_pool(self.encoder(images)))

    def train(self, mode: bool = True) -> EncoderModule:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # a linear probe keeps the encoder's BatchNorm statistics
        return self

    def _check_labels(self, labels: Tensor) -> None:
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels must be in 0..{self.num_classes - 1}, got {labels.min().item()}.."
                f"{labels.max().item()}"
            )

    def training_step(self, batch, batch_idx: int) -> Tensor:
        images, labels = batch
        self._check_labels(labels)
        if self.hflip:
            flip = torch.rand(images.shape[0], device=images.device) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {self.global_step}")
        acc = (logits.argmax(1) == labels).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=images.shape[0])
        self.log("train/acc", acc, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        self._check_labels(labels)
        logits = self(images)
        self.val_accuracy.update(logits, labels)
        self.log("val/loss", F.cross_entropy(logits, labels), batch_size=images.shape[0])

    def on_validation_epoch_end(self) -> None:
        acc = self.val_accuracy.compute()
        self.val_accuracy.reset()
        self.log("val/acc", acc, prog_bar=True)
        self.last_results = {"acc": float(acc)}

    def configure_optimizers(self):
        return self.optimizers_for([p for p in self.parameters() if p.requires_grad])
