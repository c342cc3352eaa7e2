"""``visdet export``: export an encoder to TorchScript / AOTInductor with a runtime spec and a
parity check (conf/export.yaml)."""

import hydra
from omegaconf import DictConfig

from visdet.cli.config_source import CONFIG_PATH
from visdet.export.exporter import ExportVerificationError
from visdet.export.spec import SpecError
from visdet.export.tool import run_export
from visdet.runs.job import run_tool


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
def main(cfg: DictConfig) -> None:
    known = (ExportVerificationError, SpecError, FileNotFoundError, ValueError)
    run_tool(cfg, run_export, "export", known)


if __name__ == "__main__":
    main()
