"""``visdet predict``: run a trained detector on images (conf/predict.yaml,
visdet.runs.predict)."""

import hydra
from omegaconf import DictConfig

from visdet.cli.config_source import CONFIG_PATH
from visdet.models.weights.checkpoint_state import WeightsFileError
from visdet.runs.job import run_tool
from visdet.runs.predict import run_predict


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def main(cfg: DictConfig) -> None:
    run_tool(
        cfg, run_predict, "predict", (FileNotFoundError, ValueError, TypeError, WeightsFileError)
    )


if __name__ == "__main__":
    main()
