import json

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from visdet.callbacks import LRFinder


class TinyData(L.LightningDataModule):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        self.ds = TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1)

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=8, shuffle=True)


class TinyModule(L.LightningModule):
    def __init__(self, lr=0.01):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1)
        )
        self.lr = lr

    def loss_for_batch(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x).squeeze(1), y)

    def training_step(self, batch, batch_idx):
        return self.loss_for_batch(batch)

    def configure_optimizers(self):
        opt = torch.optim.SGD(
            [
                {"params": self.net[0].parameters(), "lr": self.lr / 10},
                {"params": self.net[2].parameters()},
            ],
            lr=self.lr,
            momentum=0.9,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def fit(tmp_path, callbacks, seed=0):
    L.seed_everything(seed)
    module = TinyModule()
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=TinyData())
    return module, trainer


def test_sweep_leaves_training_exactly_as_without_it(tmp_path):
    plain, _ = fit(tmp_path, [])
    finder = LRFinder(num_steps=30, apply=False, output_dir=str(tmp_path))
    swept, trainer = fit(tmp_path, [finder])
    assert len(finder.result["lrs"]) >= 3
    for a, b in zip(plain.state_dict().values(), swept.state_dict().values()):
        assert torch.equal(a, b)  # weights, optimizer, schedule, data order and dropout restored
    data = json.loads((tmp_path / "lr_finder.json").read_text())
    assert data["applied"] is False and data["suggestion"] > 0
    assert (tmp_path / "lr_finder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_applied_suggestion_keeps_group_ratios(tmp_path):
    finder = LRFinder(num_steps=40, apply=True, suggestion="minimum", output_dir=str(tmp_path))
    module, trainer = fit(tmp_path, [finder])
    s = finder.result["suggestion"]
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.base_lrs == pytest.approx([s / 10, s])


def test_non_finite_from_the_start_keeps_the_lr(tmp_path):
    class Broken(TinyModule):
        def loss_for_batch(self, batch):
            return super().loss_for_batch(batch) * float("nan")

    finder = LRFinder(num_steps=10, output_dir=str(tmp_path))
    L.seed_everything(0)
    module = Broken()
    trainer = L.Trainer(
        max_steps=1,
        callbacks=[finder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        enable_model_summary=False,
    )
    with pytest.warns(UserWarning, match="not finite from the start"):
        trainer.fit(module, datamodule=TinyData())
    assert finder.result["suggestion"] is None
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == pytest.approx([0.001, 0.01])


def test_bad_settings():
    with pytest.raises(ValueError, match="suggestion must be one of"):
        LRFinder(suggestion="best")
    with pytest.raises(ValueError, match="min_lr < max_lr"):
        LRFinder(min_lr=1.0, max_lr=0.1)


def test_applying_a_suggestion_sets_the_one_cycle_peak():
    from visdet.callbacks.lr_finder import set_base_lrs
    from visdet.lightning.one_cycle import OneCycle

    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD(
        [{"params": [a], "lr": 0.01}, {"params": [b], "lr": 0.1}], lr=0.1, momentum=0.9
    )
    sched = OneCycle(opt, total_steps=20)

    class _Config:
        scheduler = sched

    class _Trainer:
        optimizers = [opt]
        lr_scheduler_configs = [_Config()]

    set_base_lrs(_Trainer(), [0.002, 0.02])
    assert [g["peak_lr"] for g in opt.param_groups] == [0.002, 0.02]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.002 / 25, 0.02 / 25])
    for _ in range(5):  # the peak is reached after pct_start * 20 = 5 steps
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.002, 0.02])
