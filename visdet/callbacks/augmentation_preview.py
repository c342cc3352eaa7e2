"""Write ``augmentation_preview.png`` (visdet.data.preview) once, at the start of training."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

from visdet.data.preview import augmentation_preview, write_preview

log = logging.getLogger(__name__)

PREVIEW_FILE = "augmentation_preview.png"


class AugmentationPreview(L.Callback):
    """On fit start (global rank zero only), ``n`` samples of the datamodule's ``train_set``
    before and after the module's ``augment``, written to
    ``<trainer.default_root_dir>/augmentation_preview.png``. The preview draws from a forked
    generator, so no random stream of training changes.

    Args:
        n: samples shown.
        seed: picks the samples and seeds the preview's augmentation draws.
    """

    def __init__(self, n: int = 8, seed: int = 0) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"AugmentationPreview: n must be an integer >= 1, got {n!r}")
        self.n, self.seed = n, seed

    def on_fit_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        dataset = getattr(trainer.datamodule, "train_set", None)
        augment = getattr(pl_module, "augment", None)
        if dataset is None or augment is None:
            raise ValueError(
                "AugmentationPreview: needs a datamodule with a train_set and a module with "
                "an augment (a detection run); remove callbacks.augmentation_preview otherwise"
            )
        path = Path(trainer.default_root_dir) / PREVIEW_FILE
        write_preview(augmentation_preview(dataset, augment, self.n, self.seed), path)
        log.info("augmentation preview: %s", path)
