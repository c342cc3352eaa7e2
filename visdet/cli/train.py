"""``visdet train [group=option ...] [key=value ...]``: train a detector (conf/train.yaml).

``visdet train --help`` lists the config groups and options. The run's outputs (checkpoints,
logs, metrics.json) go to its Hydra output directory. Sweeps: ``visdet train -m
optim.lr=0.01,0.02`` or ``visdet train -m hparams_search=...`` (docs/sweeps.md); a failing
job of a sweep is recorded and the sweep goes on.
"""

import hydra
from omegaconf import DictConfig

from visdet.cli.config_source import CONFIG_PATH
from visdet.runs.job import run_job
from visdet.runs.train_detector import train


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg, train)


if __name__ == "__main__":
    main()
