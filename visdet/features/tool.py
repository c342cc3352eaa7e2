"""The runs behind ``python -m visdet.extract_features`` and ``python -m visdet.preview_features``:
validate the config, build the encoder, call the configured function."""

from __future__ import annotations

import sys

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from visdet.config.validate import ConfigError, validate_config

TOP_LEVEL = {"encoder", "paths", "hydra", "task_name", "seed"}


def run_encoder_tool(cfg: DictConfig, key: str):
    """``cfg[key]`` is a partial (``extract`` or ``preview``) called with the encoder."""
    validate_config(cfg, top_level=TOP_LEVEL | {key}, required=("encoder", key))
    torch.manual_seed(cfg.get("seed") or 0)
    encoder = instantiate(cfg.encoder)
    return instantiate(cfg[key])(encoder=encoder)


def main_for(cfg: DictConfig, key: str) -> None:
    """The entry points' body: run the tool, print its result; a config error or a failure
    (missing file, bad value) exits with one line naming it."""
    try:
        result = run_encoder_tool(cfg, key)
    except (ConfigError, InstantiationException) as e:
        sys.exit(f"config error: {e}")
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"{key} failed: {e}")
    print(f"{key}: {result}", flush=True)
