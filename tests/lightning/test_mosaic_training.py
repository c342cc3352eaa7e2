"""A training run with ``aug=mosaic``: mosaic on, then off in the last ``off_last_epochs``
epochs (the switch works inside a real Trainer)."""

import logging

from tiny_runs import tiny_cfg

from visdet.runs.train_detector import train


def test_mosaic_is_switched_off_for_the_last_epoch(tmp_path, caplog, monkeypatch):
    cfg = tiny_cfg(
        tmp_path,
        "aug=mosaic",
        "aug.train_sizes=[64]",
        "aug.val_size=64",
        "aug.mosaic.off_last_epochs=1",
        "aug.mixup.off_last_epochs=1",
        "trainer.max_epochs=2",
        "test=false",
        "~callbacks.augmentation_preview",
    )
    from visdet.lightning.detector_module import DetectorModule

    shapes = []  # (epoch, mosaic on, samples in the buffer) per training batch
    original = DetectorModule.on_after_batch_transfer

    def record(self, batch, dataloader_idx):
        images, targets = original(self, batch, dataloader_idx)
        if self.training:
            shapes.append((self.current_epoch, self.augment.mosaic_on, len(self.augment.buffer)))
        return images, targets

    monkeypatch.setattr(DetectorModule, "on_after_batch_transfer", record)
    with caplog.at_level(logging.INFO, logger="visdet.data.augment"):
        metrics = train(cfg)
    assert metrics["epochs"] == 2
    assert "aug.mosaic off from epoch 1" in caplog.text
    assert "aug.mixup off from epoch 1" in caplog.text
    assert {on for epoch, on, _ in shapes if epoch == 0} == {True}
    assert {on for epoch, on, _ in shapes if epoch == 1} == {False}
    assert shapes[-1][2] == 8  # the buffer fills with the training samples
