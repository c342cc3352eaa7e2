"""A toy Hydra app for the Optuna sweeper's tests: a quadratic of its parameters, so that a
sweep is seconds, not training runs. ``slow_trial`` makes that trial sleep (to be killed);
``fail_trial`` makes that trial raise; with ``gate`` (a path) a trial waits, once started, until
that file exists."""

import os
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

from visdet.sweep.job_files import ENV_TRIAL


@hydra.main(config_path=".", config_name="config", version_base="1.3")
def main(cfg):
    trial = int(os.environ[ENV_TRIAL])
    out = Path(HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "started").write_text(str(os.getpid()))
    while cfg.gate and not Path(cfg.gate).exists():
        time.sleep(0.05)
    time.sleep(cfg.sleep_s)
    if trial == cfg.slow_trial:
        time.sleep(600)
    if trial == cfg.fail_trial:
        raise RuntimeError(f"trial {trial} fails on purpose")
    value = (cfg.x - 0.3) ** 2 + (0.0 if cfg.y == "a" else 1.0)
    if cfg.get("two_objectives"):
        return [value, abs(cfg.x)]
    return value


if __name__ == "__main__":
    main()
