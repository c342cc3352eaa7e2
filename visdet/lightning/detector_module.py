"""LightningModule wrapping any visdet detector (``model(images, targets)`` contract)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
from torch import nn

from visdet.data.augment import DetectionAugment
from visdet.lightning.model_description import with_classes
from visdet.lightning.training_module import TrainingModule
from visdet.metrics import CocoMeanAP
from visdet.models.compile import compile_detector
from visdet.models.detectors.loss_mode import loss_mode
from visdet.models.families import predicts_masks
from visdet.models.lora import LoRAConfig, LoRALayer, inject_lora, save_adapters
from visdet.models.weights.pretrained import init_backbone, init_detector
from visdet.ops.boxes import scale_boxes
from visdet.ops.paste_masks import masks_at_size

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class DetectorModule(TrainingModule):
    """Train and evaluate a detector.

    Args:
        detector: an nn.Module following the detector contract (training: dict of losses;
            eval: per-image dicts of boxes, scores, labels in input-image pixels).
        optimizer: a partial optimizer (``_partial_: true``), called with the trainable params.
        scheduler: a partial schedule called with (optimizer, total_steps), or None.
        augment: the device-side augmentation (resizing included).
        param_groups: a partial called with the detector that returns optimizer parameter
            groups (e.g. discriminative LRs); None trains all trainable parameters with the
            optimizer's LR.
        init_from: a path or URL (fetched once into the weights cache) whose weights
            initialise the whole detector: a visdet checkpoint, a torchvision
            ``fasterrcnn_resnet50_fpn``/``_v2`` state dict or an MMDetection Faster R-CNN
            R50-FPN checkpoint (visdet.models.weights.pretrained). With another number of
            classes the class-specific layers are re-initialised (reported).
        init_strict: a partial ``init_from`` match (missing or unexpected keys) is an error;
            False loads what matches and reports the rest.
        backbone: ``{"weights": PATH_OR_URL, "checkpoint_stages": [...]}``: a torchvision
            or timm ImageNet checkpoint loaded strictly into the backbone before
            ``init_from``; the stages (names or ``"all"``) whose activations are recomputed
            in backward (gradient checkpointing, visdet.models.backbones.checkpointing).
        trust_pickled_weights: read a local ``init_from`` / ``backbone.weights`` file that
            also holds numpy data (your own older file; logs a warning; never for URLs).
            Weights are always read with ``weights_only=True`` or safetensors: nothing in a
            file can run code.
        lora: LoRA settings (``pattern``, ``rank``, ``alpha``, ``dropout``,
            ``train_modules``): adapters are injected after ``init_from``; validation runs
            with merged adapters; ``lora_adapters.pt`` (adapters only) is written at the end
            of fit into the trainer's root directory.
        val_loss: also log the validation loss (``val/loss`` and its terms): the training
            losses computed on each validation batch (``visdet.models.detectors.loss_mode``:
            normalisation layers in eval mode, seeded sampling), one more forward pass per
            batch.
        compile: torch.compile the detector's dense parts in place (backbone, neck, heads:
            the family's ``COMPILE_TARGETS``; visdet.models.compile), batches padded to
            multiples of ``compile_bucket`` px.

    ``description`` (set by the training run, see visdet.runs.model_description) is stored
    in every checkpoint under ``"visdet"``, completed with the validation set's class names
    and category ids, so a checkpoint alone rebuilds the detector (visdet.inference).
    """

    def __init__(
        self,
        detector: nn.Module,
        optimizer: Callable,
        scheduler: Callable | None = None,
        augment: DetectionAugment | None = None,
        param_groups: Callable | None = None,
        init_from: str | None = None,
        lora: dict | None = None,
        init_strict: bool = True,
        backbone: dict | None = None,
        trust_pickled_weights: bool = False,
        val_loss: bool = True,
        compile: bool = False,
        compile_bucket: int = 64,
    ) -> None:
        super().__init__()
        self.param_groups_factory = param_groups
        backbone = dict(backbone or {})
        allowed = {"weights", "checkpoint_stages"}
        if set(backbone) - allowed:
            raise ValueError(
                f"model.backbone: unknown keys {sorted(set(backbone) - allowed)}; "
                f"allowed: {sorted(allowed)}"
            )
        if backbone.get("weights"):
            init_backbone(
                detector.backbone, backbone["weights"], allow_pickle=trust_pickled_weights
            )
        if backbone.get("checkpoint_stages"):
            detector.backbone.checkpoint_stages(backbone["checkpoint_stages"])
        if init_from:
            init_detector(
                detector, init_from, strict=init_strict, allow_pickle=trust_pickled_weights
            )
        self.lora_counts: dict[str, int] | None = None
        if lora:
            self.lora_counts = inject_lora(detector, LoRAConfig(**dict(lora)))
            log.info(
                "LoRA: %d layers adapted; trainable parameters %s of %s",
                self.lora_counts["adapted_layers"],
                f"{self.lora_counts['trainable']:,}",
                f"{self.lora_counts['total']:,}",
            )
        if compile:
            compiled = compile_detector(detector, compile_bucket)
            log.info(
                "torch.compile: %s (batches padded to %d px)", ", ".join(compiled), compile_bucket
            )
        self.detector = detector
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.augment = augment if augment is not None else DetectionAugment()
        self.val_metric: CocoMeanAP | None = None
        self.skipped_images = 0
        self.last_results: dict = {}
        self.last_detections: list[dict] | None = None  # COCO results of the last evaluation
        self.val_loss = val_loss
        self.description: dict | None = None
        # model EMA (visdet.callbacks.ModelEMA): the EMA weights' validation results, handed
        # over before this module logs its own; ``selected_weights`` names the better of the
        # two at the last validation ("raw" or "ema"), the weights a checkpoint then holds
        self.ema_results: dict | None = None
        self._infer_time = [0.0, 0]  # seconds and images of this evaluation's predictions
        self.selected_weights = "raw"
        self.validated_at_step: int | None = None  # the global step of the last validation

    # -- data ---------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Augment (training) or resize (evaluation) the batch on its device; returns
        (images, targets)."""
        images, targets = batch["images"], batch["targets"]
        self.skipped_images += int(batch.get("skipped", 0))
        if not images:
            return images, targets
        # the training size is drawn from the global step: the same on every DDP process
        return self.augment(images, targets, train=self.training, step=self.global_step)

    def on_train_epoch_start(self) -> None:
        """Mosaic and mixup switch off for their last epochs (``aug.*.off_last_epochs``)."""
        if hasattr(self.augment, "set_epoch"):
            self.augment.set_epoch(self.current_epoch, self.trainer.max_epochs)

    def new_metric(self) -> CocoMeanAP:
        """A COCO mAP metric for the validation set (boxes, and masks for a mask family)."""
        ann_file = self.trainer.datamodule.val_set.ann_file
        return CocoMeanAP(ann_file, masks=predicts_masks(self.detector)).to(self.device)

    def _metric(self) -> CocoMeanAP:
        dm = self.trainer.datamodule
        if self.val_metric is None or self.val_metric.ann_file != str(dm.val_set.ann_file):
            self.val_metric = self.new_metric()
        return self.val_metric

    # -- steps --------------------------------------------------------------------------
    def loss_for_batch(self, batch) -> torch.Tensor:
        """The scalar training loss of an augmented batch (also used by the LR finder)."""
        return sum(self.detector(*batch).values())

    def training_step(self, batch, batch_idx: int):
        images, targets = batch
        if not images:
            return None  # every image of the batch was unreadable
        losses = self.detector(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
            raise NonFiniteLossError(
                f"non-finite training loss at epoch {self.current_epoch}, step "
                f"{self.global_step} ({terms}); lower the learning rate or enable gradient "
                "clipping. The last good checkpoint is kept."
            )
        bs = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=bs)
        return loss

    def _eval_step(self, batch, batch_idx: int = 0, log_loss: bool = False) -> None:
        images, targets = batch
        if not images:
            return
        if log_loss:
            self._log_val_loss(images, targets, batch_idx)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        self.update_metric(self._metric(), self.detector, images, targets)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._infer_time[0] += time.perf_counter() - start
        self._infer_time[1] += len(images)

    @staticmethod
    def update_metric(metric: CocoMeanAP, detector: nn.Module, images, targets) -> None:
        """Add ``detector``'s predictions for an evaluation batch to ``metric``, in the
        original images' coordinates."""
        preds = detector(images)
        for p, t in zip(preds, targets, strict=True):
            (ih, iw), (oh, ow) = t["input_size"], t["orig_size"]
            p["boxes"] = scale_boxes(p["boxes"], ow / iw, oh / ih)
            if "masks" in p:
                p["masks"] = masks_at_size(p["masks"], (oh, ow))
        metric.update(preds, [t["image_id"] for t in targets])

    def _log_val_loss(self, images, targets, batch_idx: int) -> None:
        with loss_mode(self.detector, seed=batch_idx) as detector:
            keys = ("boxes", "labels", "masks")
            losses = detector(images, [{k: t[k] for k in keys if k in t} for t in targets])
        bs = len(images)
        self.log("val/loss", sum(losses.values()), batch_size=bs, sync_dist=True)
        for name, value in losses.items():
            self.log(f"val/{name}", value, batch_size=bs, sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(
            batch, batch_idx, log_loss=self.val_loss and not self.trainer.sanity_checking
        )

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch)

    def _log_metric(self, prefix: str) -> None:
        metric = self._metric()
        results = metric.compute()
        metric.reset()
        if prefix == "val" and self.ema_results is not None:
            ema, self.ema_results = self.ema_results, None
            self._log_results("val_raw", results)
            self._log_results("val_ema", ema)
            # the better weights (by mAP; a tie or no score keeps the raw ones) are what
            # val/* reports, the checkpoint monitors and the checkpoint holds
            self.selected_weights = "ema" if ema["mAP"] > results["mAP"] else "raw"
            results = ema if self.selected_weights == "ema" else results
            self.log("val/ema_selected", float(self.selected_weights == "ema"))
        self.last_detections = results.pop("detections", None)
        # inference time of this evaluation (this process's images; raw and EMA weights
        # together when both are evaluated): an objective for speed/accuracy sweeps
        seconds, n = self._infer_time
        self._infer_time = [0.0, 0]
        results["ms_per_image"] = 1000 * seconds / n if n else float("nan")
        self.last_results = results
        self._log_results(prefix, results)

    def _log_results(self, prefix: str, results: dict) -> None:
        # compute() gathers every process's detections, so each process logs the same
        # values (no further reduction; every rank's checkpoint callback sees the monitor)
        for name, value in results.items():
            if name not in ("per_class", "mask_per_class", "detections"):
                self.log(f"{prefix}/{name}", -1.0 if math.isnan(value) else float(value))

    def _merge_adapters(self, merge: bool) -> None:
        for module in self.detector.modules():
            if isinstance(module, LoRALayer):
                module.merge() if merge else module.unmerge()

    def on_validation_epoch_start(self) -> None:
        self._merge_adapters(True)

    def on_test_epoch_start(self) -> None:
        self._merge_adapters(True)

    def on_validation_epoch_end(self) -> None:
        self._log_metric("val")
        self._merge_adapters(False)
        if not self.trainer.sanity_checking:
            self.validated_at_step = self.global_step

    def on_fit_end(self) -> None:
        if self.lora_counts is not None and self.trainer.is_global_zero:
            path = save_adapters(self.detector, f"{self.trainer.default_root_dir}/lora_adapters.pt")
            log.info("LoRA adapters written to %s", path)

    def on_test_epoch_end(self) -> None:
        self._log_metric("test")
        self._merge_adapters(False)

    # -- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.description is not None:
            checkpoint["visdet"] = with_classes(self.description, self.trainer.datamodule)

    # -- optimisation ---------------------------------------------------------------------
    def optimizer_params(self) -> list:
        """What the optimizer is built with: the parameter groups (discriminative LRs) or
        every trainable parameter."""
        if self.param_groups_factory is not None:
            return self.param_groups_factory(self.detector)
        return [p for p in self.detector.parameters() if p.requires_grad]

    def configure_optimizers(self):
        return self.optimizers_for(self.optimizer_params())
