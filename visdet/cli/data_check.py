"""``visdet data check``: check a dataset's annotations and image headers before training
(conf/data_check.yaml, visdet.runs.data_check)."""

import hydra
from omegaconf import DictConfig

from visdet.cli.config_source import CONFIG_PATH
from visdet.data.coco import DatasetError
from visdet.runs.data_check import run_data_check
from visdet.runs.job import run_tool


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="data_check")
def main(cfg: DictConfig) -> None:
    run_tool(cfg, run_data_check, "data check", (FileNotFoundError, ValueError, DatasetError))


if __name__ == "__main__":
    main()
