"""``visdet data preview``: training samples before and after the augmentation, as one PNG
(conf/data_preview.yaml, visdet.runs.data_preview)."""

import hydra
from omegaconf import DictConfig

from visdet.cli.config_source import CONFIG_PATH
from visdet.data.coco import DatasetError
from visdet.runs.data_preview import run_data_preview
from visdet.runs.job import run_tool


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="data_preview")
def main(cfg: DictConfig) -> None:
    run_tool(cfg, run_data_preview, "data preview", (FileNotFoundError, ValueError, DatasetError))


if __name__ == "__main__":
    main()
