"""Gradient accumulation (``trainer.accumulate_grad_batches``) with every technique that
counts steps: the one-cycle schedule's length and EMA updates follow optimizer steps, not
batches; the LR finder takes one optimizer step per k batches (its loss curve equals that of
batches k times larger); progressive resizing goes by epochs."""

import lightning as L
import pytest
import torch
from tiny_runs import tiny_cfg
from torch.utils.data import DataLoader, TensorDataset

from visdet.callbacks import LRFinder
from visdet.runs.train_detector import train


def test_one_cycle_ema_and_progressive_resize_count_optimizer_steps(tmp_path, caplog):
    cfg = tiny_cfg(
        tmp_path,
        "trainer.max_epochs=2",
        "+trainer.accumulate_grad_batches=2",
        "data.batch_size=2",  # 8 images: 4 batches, 2 optimizer steps per epoch
        "sched=one_cycle",
        "+callbacks/ema=default",
        "callbacks.ema.warmup_steps=2",
        "+callbacks/progressive_resize=default",
        "test=false",
    )
    with caplog.at_level("INFO"):
        metrics = train(cfg)
    assert metrics["global_step"] == 4
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    [scheduler] = ckpt["lr_schedulers"]
    assert scheduler["total_steps"] == 4 and scheduler["last_epoch"] == 4  # the whole cycle
    assert ckpt["ema"]["updates"] == 4
    assert "progressive resizing, size per epoch: [32, 64]" in caplog.text


class Data(L.LightningDataModule):
    def __init__(self, batch_size):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        self.ds = TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1)
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=self.batch_size, shuffle=False)


class Linear(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1)
        self.batches = 0

    def loss_for_batch(self, batch):
        self.batches += 1
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x).squeeze(1), y)

    def training_step(self, batch, batch_idx):
        return self.loss_for_batch(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def sweep(tmp_path, batch_size, accumulate):
    finder = LRFinder(
        num_steps=6, max_lr=0.5, stop_factor=1e9, apply=False, output_dir=str(tmp_path)
    )
    module = Linear()
    trainer = L.Trainer(
        max_steps=0, callbacks=[finder], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        accumulate_grad_batches=accumulate,
    )  # fmt: skip
    trainer.fit(module, datamodule=Data(batch_size))
    return finder.result, module.batches


def test_lr_finder_steps_once_per_accumulated_batch(tmp_path):
    accumulated, batches = sweep(tmp_path / "a", batch_size=8, accumulate=2)
    large, large_batches = sweep(tmp_path / "b", batch_size=16, accumulate=1)
    assert batches == 12 and large_batches == 6  # 6 optimizer steps either way
    assert accumulated["lrs"] == large["lrs"]
    # the mean of two batch-8 losses and gradients is the batch-16 loss and gradient
    assert accumulated["losses"] == pytest.approx(large["losses"], rel=1e-5)
