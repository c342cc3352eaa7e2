"""The runs behind ``python -m visdet.extract_features`` and ``python -m visdet.preview_features``:
validate the config, build the encoder, call the configured function."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from visdet.config.validate import validate_config

TOP_LEVEL = {"encoder", "paths", "hydra", "task_name", "seed"}


def run_encoder_tool(cfg: DictConfig, key: str):
    """``cfg[key]`` is a partial (``extract`` or ``preview``) called with the encoder."""
    validate_config(cfg, top_level=TOP_LEVEL | {key}, required=("encoder", key))
    torch.manual_seed(cfg.get("seed") or 0)
    encoder = instantiate(cfg.encoder)
    return instantiate(cfg[key])(encoder=encoder)
