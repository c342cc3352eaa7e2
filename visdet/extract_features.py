"""``python -m visdet.extract_features``: see conf/extract_features.yaml."""

import hydra
from omegaconf import DictConfig

from visdet.features.tool import main_for


@hydra.main(version_base="1.3", config_path="../conf", config_name="extract_features")
def main(cfg: DictConfig) -> None:
    main_for(cfg, "extract")


if __name__ == "__main__":
    main()
