"""``visdet data convert``: convert a dataset between the COCO, YOLO and Pascal VOC layouts
(conf/data_convert.yaml, visdet.runs.data_convert)."""

import hydra
from omegaconf import DictConfig

from visdet.cli.config_source import CONFIG_PATH
from visdet.data.coco import DatasetError
from visdet.runs.data_convert import run_data_convert
from visdet.runs.job import run_tool


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="data_convert")
def main(cfg: DictConfig) -> None:
    run_tool(cfg, run_data_convert, "data convert", (FileNotFoundError, ValueError, DatasetError))


if __name__ == "__main__":
    main()
