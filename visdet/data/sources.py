"""Where a datamodule's COCO-format splits come from: the built-in shapes generator or a
dataset on disk. Both give the same thing: (annotation file, image folder) per split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from visdet.data.shapes import CLASSES, ShapesSettings, ensure_shapes_dataset


@dataclass(frozen=True)
class Split:
    ann_file: Path
    image_dir: Path


class ShapesSource:
    """The built-in synthetic dataset, generated on first use into ``cache_dir``."""

    def __init__(
        self,
        cache_dir: str,
        num_train: int = 600,
        num_val: int = 150,
        image_size: int = 128,
        max_objects: int = 4,
        min_object_size: int = 14,
        max_object_size: int = 56,
        empty_fraction: float = 0.05,
        seed: int = 0,
    ) -> None:
        if num_train < 1 or num_val < 1:
            raise ValueError(
                f"data.source: num_train and num_val must be >= 1, got {num_train}, {num_val}"
            )
        if not 8 <= min_object_size <= max_object_size < image_size:
            raise ValueError(
                "data.source: need 8 <= min_object_size <= max_object_size < "
                f"image_size, got {min_object_size}, {max_object_size}, {image_size}"
            )
        self.cache_dir = cache_dir
        self.settings = ShapesSettings(
            num_train,
            num_val,
            image_size,
            max_objects,
            min_object_size,
            max_object_size,
            empty_fraction,
            seed,
        )
        self.num_classes = len(CLASSES)

    def prepare(self) -> None:
        ensure_shapes_dataset(self.cache_dir, self.settings)

    def splits(self) -> dict[str, Split]:
        root = ensure_shapes_dataset(self.cache_dir, self.settings)
        return {s: Split(root / f"instances_{s}.json", root / s) for s in ("train", "val")}


class CocoSource:
    """A COCO-format dataset on disk: ``root`` joined with each relative path."""

    def __init__(
        self,
        root: str,
        train_ann: str = "annotations/instances_train2017.json",
        train_images: str = "train2017",
        val_ann: str = "annotations/instances_val2017.json",
        val_images: str = "val2017",
    ) -> None:
        self.root = Path(root)
        self.paths = {"train": (train_ann, train_images), "val": (val_ann, val_images)}

    def prepare(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.source.root: dataset folder not found: {self.root}")

    def splits(self) -> dict[str, Split]:
        self.prepare()
        return {s: Split(self.root / a, self.root / i) for s, (a, i) in self.paths.items()}
