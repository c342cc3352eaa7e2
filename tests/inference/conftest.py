"""Fixtures: the small described detector of described_checkpoint.py, and its .ckpt."""

from __future__ import annotations

from pathlib import Path

import pytest
from described_checkpoint import make_small_model, save_ckpt


@pytest.fixture(scope="session")
def small_model() -> dict:
    """``{"node": detector config, "state": weights, "description": DESCRIPTION}``."""
    return make_small_model()


@pytest.fixture
def ckpt_path(small_model, tmp_path) -> Path:
    return save_ckpt(small_model, tmp_path / "best.ckpt")
