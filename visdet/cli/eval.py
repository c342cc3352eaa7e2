"""``visdet eval``: evaluate a checkpoint on a dataset, or a COCO results file against its
annotations (conf/eval.yaml, visdet.runs.evaluate)."""

import hydra
from omegaconf import DictConfig

from visdet.cli.config_source import CONFIG_PATH
from visdet.data.coco import DatasetError
from visdet.models.weights.checkpoint_state import WeightsFileError
from visdet.runs.evaluate import run_eval
from visdet.runs.job import run_tool


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def main(cfg: DictConfig) -> None:
    known = (FileNotFoundError, ValueError, DatasetError, WeightsFileError)
    run_tool(cfg, run_eval, "eval", known)


if __name__ == "__main__":
    main()
