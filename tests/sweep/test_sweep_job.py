"""The task function of train.py: single runs stop with a message, sweep jobs record the
failure and return None; the Optuna search config composes with every searched key."""

import json
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from visdet.config.validate import ConfigError, validate_config
from visdet.runs.job import ERROR_FILE, error_message, run_job
from visdet.sweep.search_space import build_search_space
from visdet.sweep.study import build_pruner, build_sampler

CONF = Path(__file__).parents[2] / "conf"
CFG = OmegaConf.create({"optimized_metric": "val/mAP"})


def raising(error):
    def train_fn(cfg):
        raise error

    return train_fn


def test_a_finished_job_returns_the_optimized_metric(tmp_path):
    metrics = {"val/mAP": 0.25, "val/mAP50": 0.5}
    for multirun in (False, True):
        assert run_job(CFG, lambda cfg: metrics, multirun=multirun, job_dir=tmp_path) == 0.25
    other = OmegaConf.create({"optimized_metric": "val/mAP50"})
    assert run_job(other, lambda cfg: metrics, multirun=False) == 0.5
    assert math.isnan(run_job(other, lambda cfg: {}, multirun=False))  # metric absent
    # in a sweep an absent or nan metric is None: a failed trial for Optuna
    assert run_job(other, lambda cfg: {}, multirun=True, job_dir=tmp_path) is None
    nan = {"val/mAP": math.nan}
    assert run_job(CFG, lambda cfg: nan, multirun=True, job_dir=tmp_path) is None
    assert not (tmp_path / ERROR_FILE).exists()


def test_single_run_exits_with_the_message_on_a_config_error():
    with pytest.raises(SystemExit, match=r"^config error: optim\.lrr: unknown key$"):
        run_job(CFG, raising(ConfigError("optim.lrr: unknown key")), multirun=False)
    # an unexpected error keeps its traceback (not turned into a one-line exit)
    with pytest.raises(ZeroDivisionError):
        run_job(CFG, raising(ZeroDivisionError("boom")), multirun=False)


def test_sweep_job_records_the_failure_and_returns_none(tmp_path):
    try:
        raise ValueError("data.batch_size must be >= 1, got 0")
    except ValueError as cause:
        wrapped = InstantiationException("Error in call to target 'X':\nValueError(...)")
        wrapped.__cause__ = cause
    assert run_job(CFG, raising(wrapped), multirun=True, job_dir=tmp_path) is None
    record = json.loads((tmp_path / ERROR_FILE).read_text())
    assert record["status"] == "failed"
    assert record["error_type"] == "InstantiationException"
    assert record["message"] == "config error: Error in call to target 'X':\nValueError(...)"
    assert record["short_message"] == (
        "config error: ValueError: data.batch_size must be >= 1, got 0"
    )
    assert "Traceback" in record["traceback"] and "train_fn" in record["traceback"]

    assert run_job(CFG, raising(ZeroDivisionError("boom")), multirun=True, job_dir=tmp_path) is None
    record = json.loads((tmp_path / ERROR_FILE).read_text())
    assert record["message"] == "job failed: ZeroDivisionError: boom"
    # a stale error record of an earlier sweep in the same dir goes when the job succeeds
    assert run_job(CFG, lambda cfg: {"val/mAP": 0.5}, multirun=True, job_dir=tmp_path) == 0.5
    assert not (tmp_path / ERROR_FILE).exists()


def test_error_message_names_the_kind_of_failure():
    assert error_message(FileNotFoundError("no such file: x.ckpt")) == (
        "training stopped: no such file: x.ckpt"
    )
    assert error_message(KeyError("k"), short=True) == "job failed: KeyError: 'k'"


def sample_value(param):
    """One value of a searched key: the low end of a range, the last choice."""
    d = param.distribution
    return str(d.choices[-1] if hasattr(d, "choices") else d.low)


@pytest.mark.parametrize("search", sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml")))
def test_hparams_search_configs_compose_and_every_searched_key_exists(search):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"hparams_search={search}", "paths.output_dir=/tmp/visdet-test"],
            return_hydra_config=True,
        )
        sweeper = cfg.hydra.sweeper
        assert sweeper._target_ == "hydra_plugins.visdet_optuna_sweeper.VisdetOptunaSweeper"
        assert sweeper.direction == "maximize" and cfg.optimized_metric == "val/mAP"
        assert sweeper.storage is None  # the study: optuna.db in the sweep dir
        assert sweeper.sampler.name == "tpe" and sweeper.sampler.seed is not None
        build_sampler(OmegaConf.to_container(sweeper.sampler))
        build_pruner(OmegaConf.to_container(sweeper.pruner))
        space, fixed = build_search_space(sweeper.params, sweeper.search_space)
        assert len(space) >= 3 and not fixed
        for param in space:
            value = sample_value(param)
            trial = compose(
                "train",
                overrides=[f"{param.override_key}={value}", "paths.output_dir=/tmp/visdet-test"],
            )
            validate_config(trial)
            chosen = OmegaConf.select(trial, param.name)
            if not OmegaConf.is_config(chosen):  # a value (a group such as aug is a node)
                assert float(chosen) == float(value)


def test_a_weights_file_error_while_building_is_not_a_config_error():
    from visdet.models.weights.checkpoint_state import UnsafeWeightsError

    try:
        raise InstantiationException("Error in call to target 'X'") from UnsafeWeightsError(
            "model.init_from: evil.ckpt needs arbitrary unpickling"
        )
    except InstantiationException as e:
        wrapped = e
    assert error_message(wrapped) == (
        "training stopped: model.init_from: evil.ckpt needs arbitrary unpickling"
    )
