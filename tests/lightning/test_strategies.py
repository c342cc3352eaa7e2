"""``trainer=fsdp`` and ``trainer=deepspeed``: the configs compose and build Lightning's
strategies as documented (docs/integrations.md); FSDP's auto-wrap policy wraps by size. Both
need CUDA GPUs (torch 2.13's FSDP refuses CPU devices; DeepSpeed is not installed here), so
a CPU run must stop with the strategies' own one-line reasons."""

import importlib.util

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.strategies import FSDPStrategy
from tiny_runs import tiny_cfg

from visdet.config.validate import validate_config
from visdet.lightning.fsdp import size_based_policy
from visdet.runs.job import error_message
from visdet.runs.train_detector import train


def test_fsdp_config_builds_lightnings_strategy_with_visdets_settings(tmp_path):
    cfg = tiny_cfg(tmp_path, "trainer=fsdp")
    validate_config(cfg)
    assert cfg.trainer.strategy._target_.endswith("FSDPStrategy") and cfg.trainer.devices == 2
    strategy = instantiate(cfg.trainer.strategy)
    assert type(strategy) is FSDPStrategy
    assert strategy.sharding_strategy.name == "FULL_SHARD"
    assert strategy.kwargs["use_orig_params"] is True  # parameter groups are found by name


def test_the_wrap_policy_makes_units_of_modules_with_enough_parameters():
    policy = size_based_policy(min_num_params=1000)
    small, large = torch.nn.Linear(10, 10), torch.nn.Linear(100, 100)
    assert policy(module=large, recurse=False, nonwrapped_numel=10_100) is True
    assert policy(module=small, recurse=False, nonwrapped_numel=110) is False
    with pytest.raises(ValueError, match="min_num_params must be >= 1"):
        size_based_policy(0)


def test_fsdp_on_cpu_stops_with_lightnings_reason(tmp_path):
    with pytest.raises(Exception) as e:
        train(tiny_cfg(tmp_path, "trainer=fsdp", "trainer.accelerator=cpu", "trainer.devices=2"))
    assert "requires a GPU accelerator" in error_message(e.value, short=True)


def test_deepspeed_config_composes_and_names_the_missing_package(tmp_path):
    cfg = tiny_cfg(tmp_path, "trainer=deepspeed")
    validate_config(cfg)
    assert cfg.trainer.strategy.stage == 2 and cfg.trainer.precision == "16-mixed"
    if importlib.util.find_spec("deepspeed") is not None:
        pytest.skip("deepspeed is installed: the refusal below is for machines without it")
    with pytest.raises(Exception) as e:
        instantiate(cfg.trainer.strategy)
    assert "pip install -U deepspeed" in error_message(e.value, short=True)
