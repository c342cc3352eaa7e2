import pytest
import torch

from visdet.callbacks import ProgressiveResize
from visdet.callbacks.progressive_resize import schedule_sizes
from visdet.data import DetectionAugment


def test_schedule_grows_in_steps_of_32_and_ends_at_full_size():
    sizes = schedule_sizes(10, 256, start_scale=0.5, final_fraction=0.2)
    assert sizes[-2:] == [256, 256] and sizes[0] == 128
    assert all(s % 32 == 0 for s in sizes) and sizes == sorted(sizes)
    # linear from 128 to 256 over the 8 growing epochs, rounded down to multiples of 32
    assert sizes[:8] == [int(128 + e / 8 * 128) // 32 * 32 for e in range(8)]
    assert schedule_sizes(3, 64, 0.5, 0.2) == [32, 32, 64]
    assert schedule_sizes(1, 128) == [128]


def test_bad_settings_fail_before_training():
    with pytest.raises(ValueError, match="multiples of 32"):
        ProgressiveResize(final_size=100)
    with pytest.raises(ValueError, match="schedule must be one of"):
        ProgressiveResize(schedule="exponential")
    with pytest.raises(ValueError, match="start_scale"):
        schedule_sizes(4, 128, start_scale=0)


class _Trainer:
    def __init__(self, epoch, max_epochs=5):
        self.current_epoch, self.max_epochs = epoch, max_epochs


class _Module(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.augment = DetectionAugment(
            train_sizes=(128,), val_size=128, hflip=0.0, color_jitter=None
        )
        self.device = torch.device("cpu")


def test_epoch_sizes_follow_the_schedule_and_boxes_scale_with_images():
    cb = ProgressiveResize(start_scale=0.5, final_fraction=0.2)
    module = _Module()
    cb.on_fit_start(_Trainer(0), module)
    assert cb.sizes == [64, 64, 96, 96, 128]
    img = torch.zeros(3, 128, 160)
    img[:, 32:64, 40:80] = 1
    target = {"boxes": torch.tensor([[40.0, 32, 80, 64]]), "labels": torch.tensor([1])}
    for epoch, size in enumerate(cb.sizes):
        cb.on_train_epoch_start(_Trainer(epoch), module)
        out, tgt = module.augment([img], [target], train=True)
        assert out[0].shape[-2] == size  # short side
        s = size / 128
        torch.testing.assert_close(
            tgt[0]["boxes"], torch.tensor([[40 * s, 32 * s, 80 * s, 64 * s]])
        )
        val, _ = module.augment([img], [target], train=False)
        assert val[0].shape[-2] == 128  # validation at full size
    cb.on_fit_end(_Trainer(5), module)
    assert module.augment.size_override is None


def test_does_not_grow_past_a_size_predicted_not_to_fit(monkeypatch):
    # a pretend CUDA device with 1 GiB: 64 px measured at 300 MiB predicts 96 px -> 675 MiB
    # (fits in 90%) and 128 px -> 1200 MiB (does not): training stays at 96, one warning
    class _Props:
        total_memory = 2**30

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: _Props())
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: None)
    cb = ProgressiveResize(start_scale=0.5, final_fraction=0.2)
    module = _Module()
    module.device = torch.device("cuda")
    cb.on_fit_start(_Trainer(0), module)
    cb.peak_memory = {64: 300 * 2**20}
    used = []
    with pytest.warns(UserWarning, match="predicted not to fit") as record:
        for epoch in range(5):
            cb.on_train_epoch_start(_Trainer(epoch), module)
            used.append(module.augment.size_override)
            if module.augment.size_override == 96:
                cb.peak_memory[96] = int(300 * 2**20 * (96 / 64) ** 2)
    assert used == [64, 64, 96, 96, 96]
    assert len(record) == 1
