"""LightningDataModule for image classification (e.g. fine-tuning an encoder + linear head).

Batches are ``(images [B, 3, H, W], labels int64 [B])`` (the default collate stacks them), so
every dataset must return images of one size (ImageFolderDataset, ObjectCropDataset do).
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from visdet.data.datamodule import check_loader_settings

DatasetOrFactory = Dataset | Callable[[], Dataset]


def dataset_classes(dataset: Dataset) -> list[str]:
    """``classes`` of a dataset, looking through (nested) Subsets."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    if classes is None:
        raise TypeError(f"{type(dataset).__name__} has no 'classes' attribute")
    return list(classes)


class ClassificationDataModule(L.LightningDataModule):
    """Train/val loaders over classification datasets.

    Args:
        train: the training dataset, or a zero-argument callable building it in ``setup``
            (e.g. a Hydra node with ``_partial_: true``). It must have ``classes``.
        val: the validation dataset (or callable); None for none or a split of ``train``.
        batch_size: images per batch (per process).
        num_workers: DataLoader worker processes.
        val_fraction: with ``val`` None, the fraction of ``train`` held out for validation
            (a seeded random split); 0 means no validation.
        seed: seed of the split and of the training shuffle.
    """

    def __init__(
        self,
        train: DatasetOrFactory,
        val: DatasetOrFactory | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_loader_settings(batch_size, num_workers)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        if val is not None and val_fraction > 0:
            raise ValueError(
                f"data.val_fraction is {val_fraction} but data.val is also given; set one of them"
            )
        for name, ds in (("train", train), ("val", val)):
            if ds is not None and not isinstance(ds, Dataset) and not callable(ds):
                raise TypeError(
                    f"data.{name} must be a Dataset or a callable returning one, "
                    f"got {type(ds).__name__}"
                )
        self._train_arg, self._val_arg = train, val
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_fraction, self.seed = val_fraction, seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def _build(self, name: str, arg: DatasetOrFactory) -> Dataset:
        ds = arg if isinstance(arg, Dataset) else arg()
        if len(ds) == 0:
            raise ValueError(f"data.{name} is empty ({type(ds).__name__})")
        return ds

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train = self._build("train", self._train_arg)
        classes = dataset_classes(train)
        val = None if self._val_arg is None else self._build("val", self._val_arg)
        if val is not None:
            try:
                val_classes = dataset_classes(val)
            except TypeError:
                val_classes = classes  # nothing to compare against
            if val_classes != classes:
                raise ValueError(
                    f"data.val classes {val_classes} differ from data.train classes "
                    f"{classes}: labels would not mean the same class"
                )
        if val is None and self.val_fraction > 0:
            n = len(train)
            n_val = max(1, round(n * self.val_fraction))
            if n_val >= n:
                raise ValueError(
                    f"data.val_fraction {self.val_fraction} of {n} items leaves no training data"
                )
            g = torch.Generator().manual_seed(self.seed)
            order = torch.randperm(n, generator=g).tolist()
            val, train = Subset(train, sorted(order[:n_val])), Subset(train, order[n_val:])
        self.train_set, self.val_set = train, val

    @property
    def classes(self) -> list[str]:
        self.setup()
        return dataset_classes(self.train_set)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        """The validation loader, or ``[]`` (no validation) when there is no val set."""
        self.setup()
        if self.val_set is None:
            return []
        return DataLoader(
            self.val_set,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
