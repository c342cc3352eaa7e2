"""Train a detector: ``python train.py [group=option ...] [key=value ...]``.

Config groups live in conf/ (``python train.py --help`` lists them). The run's outputs
(checkpoints, logs, metrics.json) go to its Hydra output directory. Sweeps:
``python train.py -m optim.lr=0.01,0.02`` or ``python train.py -m hparams_search=...``
(docs/sweeps.md); a failing job of a sweep is recorded and the sweep goes on.
"""

import hydra
from omegaconf import DictConfig

from visdet.run import train
from visdet.sweep import run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run_job(cfg, train)


if __name__ == "__main__":
    main()
