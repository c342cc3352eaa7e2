"""The launch environment as seen at config time: rank zero and the run directory's name
under Lightning's launcher, torchrun and SLURM (environment variables as they set them)."""

import logging
import re

import pytest
from omegaconf import OmegaConf

from visdet.config import launch

LAUNCH_VARS = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "TORCHELASTIC_RUN_ID",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "zero"),
    [
        ({}, True),
        ({"LOCAL_RANK": "1"}, False),  # Lightning's launcher, second process
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # first process of the second node
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),  # torchrun
        ({"RANK": "3", "LOCAL_RANK": "1"}, False),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, True),
        ({"SLURM_PROCID": "0", "LOCAL_RANK": "1"}, False),  # Lightning child inside sbatch
        ({"SLURM_PROCID": "2"}, False),
    ],
)
def test_rank_zero_from_the_launcher_environment(clean_env, env, zero):
    for k, v in env.items():
        clean_env.setenv(k, v)
    assert launch.is_rank_zero() is zero
    assert launch.rank_zero_value(".hydra") == (".hydra" if zero else None)


def test_run_name_is_shared_by_the_processes_of_one_launch(clean_env):
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", launch.run_name())
    clean_env.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun without --rdzv-id: no shared id
    assert re.fullmatch(r"\d{4}-.*", launch.run_name())
    clean_env.setenv("TORCHELASTIC_RUN_ID", "exp7")
    assert launch.run_name() == "torchrun-exp7"
    clean_env.setenv("SLURM_JOB_ID", "4242")
    clean_env.setenv("SLURM_NTASKS", "1")  # a one-task job is not a multi-process launch
    assert launch.run_name() == "torchrun-exp7"
    clean_env.setenv("SLURM_NTASKS", "8")
    clean_env.setenv("SLURM_STEP_ID", "0")
    assert launch.run_name() == "slurm-4242-0"


def test_resolvers_are_registered_for_the_configs():
    cfg = OmegaConf.create({"name": "${visdet_run_name:}", "sub": "${visdet_rank_zero:.hydra}"})
    assert cfg.sub == ".hydra" and re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", cfg.name)


def test_file_logs_are_kept_on_rank_zero_only(clean_env, tmp_path):
    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "train.log", delay=True)
    root.addHandler(handler)
    try:
        launch.keep_file_logs_on_rank_zero()
        assert handler in root.handlers
        clean_env.setenv("LOCAL_RANK", "1")
        launch.keep_file_logs_on_rank_zero()
        assert handler not in root.handlers
        logging.getLogger("visdet").warning("rank 1 message")
        assert not (tmp_path / "train.log").exists()
    finally:
        root.removeHandler(handler)


def test_a_second_run_in_a_directory_keeps_the_first_runs_hydra_copy(tmp_path, monkeypatch):
    from visdet.config.launch import hydra_subdir

    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(var, raising=False)
    assert hydra_subdir(str(tmp_path)) == ".hydra"
    (tmp_path / ".hydra").mkdir()
    assert hydra_subdir(str(tmp_path)).startswith(".hydra-")
    monkeypatch.setenv("RANK", "1")
    assert hydra_subdir(str(tmp_path)) is None
