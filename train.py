"""Train a detector: ``python train.py [group=option ...] [key=value ...]``.

Config groups live in conf/ (``python train.py --help`` lists them). The run's outputs
(checkpoints, logs, metrics.json) go to its Hydra output directory.
"""

import sys

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from visdet.config.validate import ConfigError
from visdet.data.coco import DatasetError
from visdet.lightning import NonFiniteLossError
from visdet.run import metric_value, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        metrics = train(cfg)
    except (ConfigError, InstantiationException) as e:
        sys.exit(f"config error: {e}")
    except (NonFiniteLossError, DatasetError, FileNotFoundError) as e:
        sys.exit(f"training stopped: {e}")
    return metric_value(metrics, cfg.get("optimized_metric", "val/mAP"))


if __name__ == "__main__":
    main()
