"""The run behind ``visdet data preview`` (conf/data_preview.yaml): a PNG grid of ``n``
training samples before and after the configured augmentation (visdet.data.preview), written
to ``augmentation_preview.png`` in the run directory.

    visdet data preview data=<group> aug=<group> n=16 [seed=0] [data.source.root=DIR ...]
"""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from visdet.config.validate import validate_config
from visdet.data.preview import augmentation_preview, write_preview

TOP_LEVEL = {"data", "aug", "n", "seed", "paths", "hydra", "task_name"}
PREVIEW_FILE = "augmentation_preview.png"


def run_data_preview(cfg: DictConfig) -> Path:
    """Build the datamodule's training split and the augmentation as configured, write the
    preview; prints and returns its path."""
    validate_config(cfg, top_level=TOP_LEVEL, required=("data", "aug"))
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    augment = instantiate(cfg.aug)
    image = augmentation_preview(datamodule.train_set, augment, n=int(cfg.n), seed=int(cfg.seed))
    path = Path(cfg.paths.output_dir) / PREVIEW_FILE
    write_preview(image, path)
    print(f"data preview: {path}", flush=True)
    return path
