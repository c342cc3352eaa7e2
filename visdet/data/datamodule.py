"""LightningDataModule for COCO-format detection data."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from visdet.data.coco import CocoDetection, DatasetError, SkippedImage
from visdet.data.distributed_sampling import EvaluationShardSampler, shard_batches
from visdet.data.repeat_factor import (
    RepeatFactorSampler,
    check_threshold,
    describe_repeat_factors,
    repeat_factors,
)

log = logging.getLogger(__name__)

SAMPLERS = ("random", "repeat_factor")


def check_loader_settings(batch_size: int, num_workers: int) -> None:
    """ValueError naming ``data.batch_size`` / ``data.num_workers`` when out of range."""
    if batch_size < 1:
        raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")


def collate_detection(items: list) -> dict:
    """A batch ``{"images": [Tensor[3, H, W]], "targets": [dict], "skipped": int,
    "skipped_files": [(path, reason)]}``: lists because sizes vary; ``SkippedImage`` (or
    ``None``) items, images that cannot be decoded, are left out, counted and named."""
    good = [it for it in items if isinstance(it, tuple | list)]
    return {
        "images": [it[0] for it in good],
        "targets": [it[1] for it in good],
        "skipped": len(items) - len(good),
        "skipped_files": [(it.path, it.reason) for it in items if isinstance(it, SkippedImage)],
    }


class AspectRatioBatchSampler(Sampler[list[int]]):
    """Batches of images on the same side of aspect ratio 1 (landscape vs portrait), in a
    shuffled order that a seed and the epoch fix. With ``num_replicas > 1`` (DDP) every
    process builds the same list and keeps its shard (``shard_batches``).

    ``epoch_indices``: the images of an epoch, ``epoch -> [index]`` (repeats allowed), e.g.
    ``RepeatFactorSampler.epoch_list``; None: every image once (``range(N)``). ``len()`` is
    the number of batches the next ``__iter__`` yields."""

    def __init__(
        self,
        aspect_ratios: list[float],
        batch_size: int,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        epoch_indices: Callable[[int], list[int]] | None = None,
    ) -> None:
        self.landscape = [a >= 1 for a in aspect_ratios]
        self.batch_size, self.seed, self.drop_last, self.epoch = batch_size, seed, drop_last, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch_indices = epoch_indices

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed + epoch)
        pool = (
            range(len(self.landscape)) if self.epoch_indices is None else self.epoch_indices(epoch)
        )
        groups = [
            [i for i in pool if self.landscape[i]],
            [i for i in pool if not self.landscape[i]],
        ]
        batches = []
        for idx in groups:
            rng.shuffle(idx)
            for s in range(0, len(idx), self.batch_size):
                b = idx[s : s + self.batch_size]
                if len(b) == self.batch_size or not self.drop_last:
                    batches.append(b)
        rng.shuffle(batches)
        return shard_batches(batches, self.num_replicas, self.rank)

    def __iter__(self) -> Iterator[list[int]]:
        self.epoch += 1
        return iter(self._batches(self.epoch))

    def __len__(self) -> int:
        return len(self._batches(self.epoch + 1))


class DetectionDataModule(L.LightningDataModule):
    """Train/val loaders over a source's COCO-format splits.

    Args:
        source: a ShapesSource, CocoSource, YoloSource, VocSource or AutoSource (anything
            with ``prepare()`` and ``splits()``).
        num_classes: the number of object classes; None (the default): read from the training
            split's categories by ``setup``; a number is checked against every split's file.
        batch_size: images per batch (per process).
        num_workers, pin_memory, persistent_workers: DataLoader settings.
        group_by_aspect_ratio: batch landscape and portrait images separately.
        seed: shuffling seed of the training samplers (aspect-ratio, repeat-factor, DDP).
        sampler: which images an epoch holds: "random" (every training image once, shuffled)
            or "repeat_factor" (LVIS repeat-factor sampling, visdet.data.repeat_factor: images
            with rare classes appear more often); combines with ``group_by_aspect_ratio``
            (the grouping batches the epoch's repeat-factor list) and with DDP.
        repeat_threshold: the repeat-factor threshold ``t`` in (0, 1]: a class found in fewer
            than this fraction of the training images is repeated (``sqrt(t / f)``); used
            only with ``sampler="repeat_factor"``.
        masks: targets carry instance masks (compact RLE until the device; Mask R-CNN's
            presets set ``data.masks=true``).
        max_image_pixels: images with more pixels are named and skipped (decompression-bomb
            limit); None: Pillow's default.
        root: the dataset folder of ``data=auto data.root=DIR`` (the config interpolates it
            into ``source.root``); kept as ``self.root``, not used otherwise.

    ``setup`` reads and checks the annotation files of every split before training;
    ``skipped_files`` lists the images that could not be decoded (each named once in the log).
    """

    def __init__(
        self,
        source,
        num_classes: int | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        group_by_aspect_ratio: bool = False,
        seed: int = 0,
        max_image_pixels: int | None = None,
        root: str | None = None,
        sampler: str = "random",
        repeat_threshold: float = 0.001,
        masks: bool = False,
    ) -> None:
        super().__init__()
        self.masks = masks
        check_loader_settings(batch_size, num_workers)
        if sampler not in SAMPLERS:
            raise ValueError(f"data.sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        check_threshold(repeat_threshold)
        self.source = source
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.group_by_aspect_ratio = group_by_aspect_ratio
        self.seed = seed
        self.sampler = sampler
        self.repeat_threshold = repeat_threshold
        self.repeat_factors: list[float] | None = None  # per training image, set by setup
        self.train_set: CocoDetection | None = None
        self.val_set: CocoDetection | None = None
        self.max_image_pixels = max_image_pixels
        self.root = root
        self.skipped_images = 0
        self.skipped_files: list[str] = []

    def prepare_data(self) -> None:
        self.source.prepare()  # generation / existence checks, once, on rank 0

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is not None:
            return
        splits = self.source.splits()
        sets = {
            name: CocoDetection(
                split.ann_file, split.image_dir, self.max_image_pixels, masks=self.masks
            )  # fmt: skip
            for name, split in splits.items()
        }  # every split's annotation file is read and checked here, before training
        if self.num_classes is None:  # classes come from the data
            self.num_classes = len(sets["train"].cat_ids)
        for name, ds in sets.items():
            if len(ds.cat_ids) != self.num_classes:
                raise DatasetError(
                    f"data.num_classes is {self.num_classes} but {ds.ann_file} has "
                    f"{len(ds.cat_ids)} categories ({name} split)"
                )
        train, val = sets["train"], sets["val"]
        if val.cat_ids != train.cat_ids:
            raise DatasetError(
                f"the train and val annotation files list different category ids: "
                f"{train.ann_file} has {train.cat_ids}, {val.ann_file} has {val.cat_ids}"
            )
        if train.num_boxes() == 0:
            raise DatasetError(
                f"{train.ann_file}: the training split has no usable box "
                f"({len(train)} images, {train.dropped_boxes} boxes dropped as degenerate)"
            )
        self.train_set, self.val_set = train, val
        if self.sampler == "repeat_factor":
            labels = [t["labels"].tolist() for t in train.targets]
            self.repeat_factors = repeat_factors(labels, self.repeat_threshold)
            log.info(describe_repeat_factors(self.repeat_factors, self.repeat_threshold))

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Names each image that could not be decoded, once (batches come from workers)."""
        for path, reason in batch.get("skipped_files", ()) if isinstance(batch, dict) else ():
            if path not in self.skipped_files:
                self.skipped_files.append(path)
                log.warning("skipping an image that cannot be decoded: %s (%s)", path, reason)
        return batch

    def _processes(self) -> tuple[int, int]:
        """(number of processes, this process's rank): (1, 0) outside distributed training."""
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def _loader(self, dataset: CocoDetection, train: bool) -> DataLoader:
        """See visdet.data.distributed_sampling for how data is split across processes."""
        common = {
            "num_workers": self.num_workers,
            # pinned pages only speed up copies to a GPU: on CPU they cost and warn
            "pin_memory": self.pin_memory and torch.cuda.is_available(),
            "collate_fn": collate_detection,
            "persistent_workers": self.persistent_workers,
        }
        world, rank = self._processes()
        repeat = None
        if train and self.repeat_factors is not None:
            repeat = RepeatFactorSampler(self.repeat_factors, self.seed, world, rank)
        if train and self.group_by_aspect_ratio:
            sampler = AspectRatioBatchSampler(
                dataset.aspect_ratios(),
                self.batch_size,
                self.seed,
                num_replicas=world,
                rank=rank,
                epoch_indices=repeat.epoch_list if repeat is not None else None,
            )
            return DataLoader(dataset, batch_sampler=sampler, **common)
        if repeat is not None:  # already this process's shard
            return DataLoader(dataset, batch_size=self.batch_size, sampler=repeat, **common)
        if world == 1:
            return DataLoader(dataset, batch_size=self.batch_size, shuffle=train, **common)
        if train:
            shard = DistributedSampler(
                dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed
            )
        else:
            shard = EvaluationShardSampler(dataset, num_replicas=world, rank=rank)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=shard, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)
