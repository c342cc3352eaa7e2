"""``visdet features preview``: a PNG grid of an encoder's feature maps
(conf/preview_features.yaml)."""

import hydra
from omegaconf import DictConfig

from visdet.cli.config_source import CONFIG_PATH
from visdet.features.tool import main_for


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="preview_features")
def main(cfg: DictConfig) -> None:
    main_for(cfg, "preview")


if __name__ == "__main__":
    main()
