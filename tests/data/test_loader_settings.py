"""DataLoader settings the data module derives: pinned memory only where a GPU copy uses it."""

import warnings

import torch

from visdet.data import DetectionDataModule, ShapesSource


def test_pin_memory_is_used_only_with_cuda(tmp_path):
    source = ShapesSource(str(tmp_path / "d"), num_train=2, num_val=1, image_size=64)
    dm = DetectionDataModule(source, num_classes=None, batch_size=1, pin_memory=True)
    dm.prepare_data()
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        assert loader.pin_memory is torch.cuda.is_available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # CPU: no "pin_memory ... no accelerator" warning
        next(iter(dm.train_dataloader()))
