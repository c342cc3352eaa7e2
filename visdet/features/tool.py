"""The runs behind ``visdet features extract`` and ``visdet features preview``:
validate the config, build the encoder, call the configured function."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from visdet.config.validate import validate_config
from visdet.runs.job import run_tool

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
    result = run_tool(cfg, lambda c: run_encoder_tool(c, key), key)
    print(f"{key}: {result}", flush=True)
