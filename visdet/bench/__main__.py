"""``python -m visdet.bench``: measure components (see conf/bench.yaml)."""

import sys

import hydra
from omegaconf import DictConfig

from visdet.bench.tool import run_bench
from visdet.config.validate import ConfigError


@hydra.main(version_base="1.3", config_path="../../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    try:
        run_bench(cfg)
    except ConfigError as e:
        sys.exit(f"config error: {e}")
    except ValueError as e:  # unknown component or group names list the valid ones
        sys.exit(f"benchmark stopped: {e}")


if __name__ == "__main__":
    main()
