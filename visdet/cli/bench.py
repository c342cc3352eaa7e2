"""``visdet bench``: measure components and whole detectors (conf/bench.yaml)."""

import hydra
from omegaconf import DictConfig

from visdet.bench.tool import run_bench
from visdet.cli.config_source import CONFIG_PATH
from visdet.runs.job import run_tool


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="bench")
def main(cfg: DictConfig) -> None:
    # unknown component or group names are ValueErrors that list the valid ones
    run_tool(cfg, run_bench, "benchmark")


if __name__ == "__main__":
    main()
