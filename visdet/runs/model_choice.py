"""``model=<preset>`` on the ``visdet eval`` / ``visdet predict`` command line.

``model`` is a config group (conf/model/), so Hydra reads ``model=faster_rcnn_r50_fpn`` as a
group choice and composes that preset (with its ``backbone`` and ``neck``) into the tool's
config. The tools only need the preset's name, for ``visdet.Detector.from_checkpoint``, which
builds the detector from the same preset: ``chosen_preset`` reads it back from Hydra's record
of the choices; ``tool_settings`` is the config without the composed preset, for validation.
"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

PRESET_KEYS = ("model", "backbone", "neck")


def chosen_preset(cfg: DictConfig) -> str | None:
    """The ``model=`` preset name, or None when none was chosen."""
    node = cfg.get("model")
    if node is None:
        return None
    if isinstance(node, str):  # set as a plain value (e.g. a config written by hand)
        return node
    if "hydra" in cfg:  # composed with return_hydra_config=True
        return cfg.hydra.runtime.choices.get("model")
    return HydraConfig.get().runtime.choices.get("model")


def tool_settings(cfg: DictConfig) -> DictConfig:
    """``cfg`` without the nodes a ``model=`` preset composes into it."""
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k not in PRESET_KEYS])
