"""``visdet train-encoder``: fine-tune an encoder + linear head (conf/train_encoder.yaml;
e.g. ``encoder_data@data=image_folder data.train.root=/my/classes``). Sweeps (``-m``)
behave as ``visdet train``'s: a failing job is recorded and the sweep goes on."""

import hydra
from omegaconf import DictConfig

from visdet.cli.config_source import CONFIG_PATH
from visdet.runs.job import run_job
from visdet.runs.train_encoder import train_encoder


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train_encoder")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg, train_encoder)


if __name__ == "__main__":
    main()
