"""``python -m visdet.train_encoder``: fine-tune an encoder + linear head
(conf/train_encoder.yaml; e.g.
``encoder_data@data=image_folder data.train.root=/my/classes``)."""

import sys

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from visdet.config.validate import ConfigError
from visdet.data.coco import DatasetError
from visdet.encoder_run import train_encoder
from visdet.run import metric_value


@hydra.main(version_base="1.3", config_path="../conf", config_name="train_encoder")
def main(cfg: DictConfig) -> float:
    try:
        metrics = train_encoder(cfg)
    except (ConfigError, InstantiationException) as e:
        sys.exit(f"config error: {e}")
    except (DatasetError, FileNotFoundError, FloatingPointError) as e:
        sys.exit(f"training stopped: {e}")
    return metric_value(metrics, cfg.get("optimized_metric", "val/acc"))


if __name__ == "__main__":
    main()
