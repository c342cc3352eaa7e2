import pytest
import torch

from visdet.callbacks import FreezeUnfreeze


class FakeTrainer:
    def __init__(self, epoch):
        self.current_epoch = epoch


class FakeModule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.detector = torch.nn.ModuleDict(
            {
                "backbone": torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)),
                "head": torch.nn.Linear(4, 2),
            }
        )


def test_frozen_for_n_epochs_then_released():
    module = FakeModule()
    cb = FreezeUnfreeze(frozen_epochs=2, prefixes=("backbone.",))
    backbone = list(module.detector["backbone"].parameters())
    for epoch in (0, 1):
        module.train()
        cb.on_train_epoch_start(FakeTrainer(epoch), module)
        assert not any(p.requires_grad for p in backbone)
        assert all(p.requires_grad for p in module.detector["head"].parameters())
        assert not module.detector["backbone"][1].training  # BN statistics frozen too
    module.train()
    cb.on_train_epoch_start(FakeTrainer(2), module)
    assert all(p.requires_grad for p in backbone)
    assert module.detector["backbone"][1].training


def test_bad_settings():
    with pytest.raises(ValueError, match="frozen_epochs must be >= 1"):
        FreezeUnfreeze(frozen_epochs=0)
    cb = FreezeUnfreeze(prefixes=("nothing.",))
    with pytest.raises(ValueError, match="match no trainable parameter"):
        cb.on_train_epoch_start(FakeTrainer(0), FakeModule())
