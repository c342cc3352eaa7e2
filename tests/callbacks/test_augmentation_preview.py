"""AugmentationPreview: written once at the start of a tiny training run, from rank zero only,
and the run's losses are identical with and without it (no random stream of training moves)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from tiny_runs import tiny_cfg

from visdet.callbacks import AugmentationPreview
from visdet.data.preview import CAPTION_HEIGHT, PAD, PAIR_GAP
from visdet.runs.train_detector import train


def read_losses(run_dir):
    lines = (run_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("train/loss")
    return [float(r.split(",")[col]) for r in lines[1:] if r.split(",")[col]]


def tiny_train(tmp_path, *extra):
    fast = ("trainer.max_epochs=1", "test=false", "+trainer.limit_val_batches=0")
    train(tiny_cfg(tmp_path, *fast, *extra))
    return tmp_path / "run"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_preview_is_written_and_training_losses_are_unchanged(tmp_path):
    with_run = tiny_train(tmp_path / "with")
    without_run = tiny_train(tmp_path / "without", "~callbacks.augmentation_preview")
    with Image.open(with_run / "augmentation_preview.png") as image:  # 8 pairs: 3 x 3 grid
        assert image.size == (
            PAD + 3 * (2 * 64 + PAIR_GAP + PAD),
            PAD + 3 * (CAPTION_HEIGHT + 64 + PAD),
        )
    assert not (without_run / "augmentation_preview.png").exists()
    with_losses, without_losses = read_losses(with_run), read_losses(without_run)
    assert len(with_losses) == 2
    assert with_losses == without_losses


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_callback_that_draws_from_the_generator_would_change_the_losses(tmp_path, monkeypatch):
    """The test above can see a moved stream: one extra draw at fit start changes the losses."""
    base = tiny_train(tmp_path / "base", "~callbacks.augmentation_preview")
    monkeypatch.setattr(AugmentationPreview, "on_fit_start", lambda self, t, m: torch.rand(1))
    moved = tiny_train(tmp_path / "moved")
    assert read_losses(base) != read_losses(moved)


def test_only_rank_zero_writes(tmp_path):
    trainer = SimpleNamespace(is_global_zero=False, default_root_dir=str(tmp_path))
    AugmentationPreview(n=2).on_fit_start(trainer, SimpleNamespace())
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        AugmentationPreview(n=0)
    trainer = SimpleNamespace(
        is_global_zero=True, default_root_dir=str(tmp_path), datamodule=SimpleNamespace()
    )
    with pytest.raises(ValueError, match="needs a datamodule with a train_set"):
        AugmentationPreview().on_fit_start(trainer, SimpleNamespace())
