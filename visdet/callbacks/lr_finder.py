"""LR finder (Smith 2015; fastai defaults): an exponential LR sweep before fitting.

At the start of fit it trains for up to ``num_steps`` batches with the LR growing
exponentially from ``min_lr`` to ``max_lr``, records the smoothed loss, stops once it
exceeds ``stop_factor`` x the best, then restores the model, optimizer, schedulers and random
state exactly, so fitting starts as if the sweep never ran. It writes ``lr_finder.png`` (loss
vs LR on a log axis, suggestion marked) and ``lr_finder.json``, and applies the suggestion
(keeping the ratios between parameter groups; with one-cycle it becomes the peak) unless
``apply=false``. All processes see the same averaged loss, so they agree on the result.

The LightningModule must provide ``loss_for_batch(batch) -> Tensor`` (a transferred,
augmented batch in, the scalar training loss out).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from visdet.callbacks.lr_suggestions import METHODS, suggest_lr
from visdet.io.atomic_write import write_text_atomic
from visdet.lightning.rng_state import capture_rng_state, restore_rng_state

log = logging.getLogger(__name__)


def set_base_lrs(trainer: L.Trainer, lrs: list[float]) -> None:
    """Make ``lrs`` the configured LR of each group of the first optimizer, for its
    scheduler too (LambdaLR base LRs, one-cycle peaks), and recompute the current LR."""
    optimizer = trainer.optimizers[0]
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["initial_lr"] = lr
        if "peak_lr" in group:
            group["peak_lr"] = lr
        group["lr"] = lr
    for config in trainer.lr_scheduler_configs:
        scheduler = config.scheduler
        if getattr(scheduler, "optimizer", None) is optimizer:
            scheduler.base_lrs = list(lrs)
            scheduler.last_epoch -= 1
            scheduler.step()


class LRFinder(L.Callback):
    """See the module docstring.

    Args:
        min_lr, max_lr: sweep range (for the group with the largest configured LR).
        num_steps: sweep length in batches.
        stop_factor: stop once the smoothed loss exceeds this many times the best.
        beta: smoothing of the loss (exponential moving average, bias-corrected).
        suggestion: ``valley``, ``steep`` or ``minimum``.
        apply: set the suggested LR; False only reports it.
        output_dir: where the PNG and JSON go (default: the trainer's log/root dir).
    """

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        stop_factor: float = 4.0,
        beta: float = 0.98,
        suggestion: str = "valley",
        apply: bool = True,
        output_dir: str | None = None,
    ) -> None:
        if suggestion not in METHODS:
            raise ValueError(
                f"callbacks.lr_finder.suggestion must be one of {METHODS}, got {suggestion!r}"
            )
        if not 0 < min_lr < max_lr:
            raise ValueError(
                f"callbacks.lr_finder: need 0 < min_lr < max_lr, got {min_lr}, {max_lr}"
            )
        if num_steps < 3:
            raise ValueError(f"callbacks.lr_finder.num_steps must be >= 3, got {num_steps}")
        self.min_lr, self.max_lr, self.num_steps = min_lr, max_lr, num_steps
        self.stop_factor, self.beta, self.suggestion = stop_factor, beta, suggestion
        self.apply, self.output_dir = apply, output_dir
        self.result: dict | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is not None:  # a resumed run keeps its schedule
            rank_zero_info("LR finder: resuming from a checkpoint, sweep skipped")
            return
        if not hasattr(pl_module, "loss_for_batch"):
            raise TypeError(f"LR finder: {type(pl_module).__name__} has no loss_for_batch(batch)")
        optimizer = trainer.optimizers[0]
        base = [g["initial_lr"] if "initial_lr" in g else g["lr"] for g in optimizer.param_groups]
        saved = {
            "model": copy.deepcopy(pl_module.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "schedulers": [
                copy.deepcopy(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs
            ],
            "rng": capture_rng_state(),
            "training": pl_module.training,
        }
        try:
            lrs, losses = self._sweep(trainer, pl_module, optimizer, base)
        finally:
            pl_module.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            for c, s in zip(trainer.lr_scheduler_configs, saved["schedulers"], strict=True):
                c.scheduler.load_state_dict(s)
            restore_rng_state(saved["rng"])
            pl_module.train(saved["training"])
            optimizer.zero_grad(set_to_none=True)
        self._finish(trainer, base, lrs, losses)

    def _sweep(self, trainer, pl_module, optimizer, base) -> tuple[list[float], list[float]]:
        """One optimizer step per sweep step, as in training: with
        ``trainer.accumulate_grad_batches`` = k, each step averages the gradients of k
        batches, so the LR is found for the batch the optimizer actually sees."""
        ratio = [b / max(base) for b in base]
        loader = trainer.datamodule.train_dataloader()
        accumulate = max(1, int(trainer.accumulate_grad_batches))
        pl_module.train()
        lrs, losses, avg, best = [], [], 0.0, math.inf
        batches = iter(loader)

        def next_batch():
            nonlocal batches
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(loader)
                batch = next(batches)
            batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
            return pl_module.on_after_batch_transfer(batch, 0)

        for step in range(self.num_steps):
            lr = self.min_lr * (self.max_lr / self.min_lr) ** (step / (self.num_steps - 1))
            for group, r in zip(optimizer.param_groups, ratio, strict=True):
                group["lr"] = lr * r
            optimizer.zero_grad(set_to_none=True)
            value = 0.0
            for _ in range(accumulate):
                loss = pl_module.loss_for_batch(next_batch())
                part = float(trainer.strategy.reduce(loss.detach(), reduce_op="mean"))
                value += part / accumulate
                if not math.isfinite(part):
                    break
                (loss / accumulate).backward()
            if not math.isfinite(value):
                if step > 0:
                    losses.append(value)
                    lrs.append(lr)
                break
            optimizer.step()
            avg = self.beta * avg + (1 - self.beta) * value
            smoothed = avg / (1 - self.beta ** (step + 1))
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if smoothed > self.stop_factor * best:
                break
        return lrs, losses

    def _finish(
        self, trainer: L.Trainer, base: list[float], lrs: list[float], losses: list[float]
    ) -> None:
        finite = [x for x in losses if math.isfinite(x)]
        if len(finite) < 3:
            rank_zero_warn(
                f"LR finder: the loss was not finite from the start "
                f"({len(finite)} finite points); keeping the configured LR {max(base):g}"
            )
            self.result = {"lrs": lrs, "losses": losses, "suggestion": None}
            return
        suggested = suggest_lr(lrs, losses, self.suggestion)
        new = [suggested * b / max(base) for b in base]
        self.result = {
            "lrs": lrs,
            "losses": losses,
            "suggestion": suggested,
            "method": self.suggestion,
            "configured_lr": max(base),
            "applied": self.apply,
        }
        if self.apply:
            set_base_lrs(trainer, new)
        rank_zero_info(
            f"LR finder ({self.suggestion}): suggested LR {suggested:.3g} "
            f"(configured {max(base):.3g}); "
            + ("applied" if self.apply else "not applied (apply=false)")
        )
        if trainer.is_global_zero:
            self._write(Path(self.output_dir or trainer.default_root_dir))

    def _write(self, out_dir: Path) -> None:
        write_text_atomic(out_dir / "lr_finder.json", json.dumps(self.result, indent=2))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.result["lrs"], self.result["losses"])
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed training loss")
        s = self.result["suggestion"]
        ax.axvline(s, color="red", linestyle="--", label=f"{self.result['method']}: {s:.2g}")
        ax.legend()
        ax.set_title("LR finder")
        fig.tight_layout()
        tmp = out_dir / ".lr_finder.png.tmp"
        fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        tmp.replace(out_dir / "lr_finder.png")
