"""Build a detector from its config preset without a training run: the same ``conf/model``
presets ``visdet train model=...`` uses, composed through Hydra's compose API, so the
benchmark, the contract tests and Python users get exactly the trained architecture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

CONFIG_MODULE = "visdet.conf"


def model_presets() -> list[str]:
    """The options of the ``model`` config group (families and presets), sorted."""
    import visdet.conf

    return sorted(p.stem for p in (Path(visdet.conf.__file__).parent / "model").glob("*.yaml"))


def compose_train_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The composed training config (conf/train.yaml) with command-line style overrides."""
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app or another compose
        return compose("train", overrides=list(overrides))
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose("train", overrides=list(overrides))


def build_detector(preset: str, num_classes: int, overrides: Sequence[str] = ()) -> nn.Module:
    """The detector of ``model=<preset>`` (e.g. ``faster_rcnn_r18_fpn``) for ``num_classes``
    object classes; ``overrides`` as on the command line (``backbone=resnet50``,
    ``neck.out_channels=64``, ``model.detector.min_size=800``)."""
    if preset not in model_presets():
        raise ValueError(
            f"model: unknown preset {preset!r}; available: {', '.join(model_presets())}"
        )
    cfg = compose_train_config([f"model={preset}", f"data.num_classes={num_classes}", *overrides])
    return instantiate(cfg.model.detector)
