"""``python -m visdet.export``: export an encoder (see conf/export.yaml)."""

import sys

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from visdet.config.validate import ConfigError
from visdet.export.exporter import ExportVerificationError
from visdet.export.spec import SpecError
from visdet.export.tool import run_export


@hydra.main(version_base="1.3", config_path="../../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    try:
        run_export(cfg)
    except (ConfigError, InstantiationException) as e:
        sys.exit(f"config error: {e}")
    except (ExportVerificationError, SpecError, FileNotFoundError, ValueError) as e:
        sys.exit(f"export failed: {e}")


if __name__ == "__main__":
    main()
