"""``python -m visdet.extract_features``: see conf/extract_features.yaml."""

import sys

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from visdet.config.validate import ConfigError
from visdet.features.tool import run_encoder_tool


@hydra.main(version_base="1.3", config_path="../conf", config_name="extract_features")
def main(cfg: DictConfig) -> None:
    try:
        result = run_encoder_tool(cfg, "extract")
    except (ConfigError, InstantiationException) as e:
        sys.exit(f"config error: {e}")
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"extract failed: {e}")
    print(f"extract: {result}", flush=True)


if __name__ == "__main__":
    main()
