"""Object crops of a COCO-format detection dataset as a classification dataset.

One item per non-crowd annotation: ``(image, label)``, image float [3, H, W] RGB in [0, 1],
the box enlarged by ``context`` of its width/height on each side, clipped to the image,
widened to whole pixels (floor of the start, ceil of the end) and bilinearly resized to
``image_size``; label an int64 scalar tensor in 0..K-1, the category's index in sorted
category-id order. Annotation files are validated by ``visdet.data.coco.load_coco``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from visdet.data.coco import load_coco
from visdet.data.image_folder import check_image_size, open_rgb, to_tensor
from visdet.data.sources import ShapesSource

log = logging.getLogger(__name__)


class CropRecord(NamedTuple):
    path: Path
    box: tuple[float, float, float, float]  # xyxy, absolute pixels, clipped to the image
    label: int  # 0..K-1
    ann_id: int
    image_size: tuple[int, int] | None = None  # (width, height) the annotation gives


def crop_box(
    box: tuple[float, float, float, float], context: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """Integer pixel box (x1, y1, x2, y2), end exclusive: ``box`` grown by ``context`` of its
    size on each side, clipped to a ``width`` x ``height`` image, floor/ceil to whole pixels."""
    x1, y1, x2, y2 = box
    dx, dy = context * (x2 - x1), context * (y2 - y1)
    eps = 1e-6  # so that float noise (e.g. 8.0000001) does not add a pixel
    return (
        max(0, math.floor(x1 - dx + eps)),
        max(0, math.floor(y1 - dy + eps)),
        min(width, math.ceil(x2 + dx - eps)),
        min(height, math.ceil(y2 + dy - eps)),
    )


class ObjectCropDataset(Dataset):
    """Crops of the objects in a COCO-format split.

    Args:
        ann_file: the instances JSON.
        image_dir: folder the ``file_name`` entries are relative to.
        image_size: (H, W) of every returned crop.
        context: extra margin on each side, as a fraction of the box width/height.
        min_box_size: boxes narrower or lower than this (pixels, after clipping to the
            image) are skipped; the count is logged once.

    Attributes: ``classes`` (category names in sorted id order), ``records`` (CropRecord per
    item: image path, xyxy box, label, annotation id).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        image_size: tuple[int, int] = (224, 224),
        context: float = 0.1,
        min_box_size: float = 2.0,
    ) -> None:
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        self.image_size = check_image_size(image_size)
        if context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        if min_box_size < 0:
            raise ValueError(f"min_box_size must be >= 0, got {min_box_size}")
        self.context = float(context)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        coco = load_coco(self.ann_file)
        cat_ids = sorted(coco.getCatIds())
        label_of = {c: i for i, c in enumerate(cat_ids)}
        self.classes: list[str] = [str(coco.cats[c].get("name", c)) for c in cat_ids]
        self.records: list[CropRecord] = []
        small = 0
        for ann_id in sorted(coco.anns):
            ann = coco.anns[ann_id]
            if ann.get("iscrowd", 0):
                continue
            info = coco.imgs[ann["image_id"]]
            x, y, w, h = (float(v) for v in ann["bbox"])
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(info["width"]), x + w), min(float(info["height"]), y + h)
            if x2 - x1 < min_box_size or y2 - y1 < min_box_size or x2 <= x1 or y2 <= y1:
                small += 1
                continue
            path = self.image_dir / info["file_name"]
            self.records.append(
                CropRecord(
                    path,
                    (x1, y1, x2, y2),
                    label_of[ann["category_id"]],
                    ann_id,
                    (info["width"], info["height"]),
                )
            )
        if small:
            log.warning(
                "%s: skipped %d boxes smaller than %s px (after clipping to the image)",
                self.ann_file.name,
                small,
                min_box_size,
            )
        missing = sorted({str(r.path) for r in self.records if not r.path.is_file()})
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image files listed in {self.ann_file} are missing, "
                f"first: {missing[0]}"
            )
        unused = [n for i, n in enumerate(self.classes) if i not in {r.label for r in self.records}]
        if unused:
            log.warning("%s: no crops of categories %s", self.ann_file.name, unused)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        record = self.records[index]
        image = open_rgb(record.path, record.image_size)
        box = crop_box(record.box, self.context, *image.size)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(
                f"annotation {record.ann_id} box {record.box} lies outside {record.path} "
                f"(size {image.size[0]}x{image.size[1]}); does {self.ann_file} give its size?"
            )
        crop = to_tensor(image.crop(box), self.image_size)
        return crop, torch.tensor(record.label, dtype=torch.int64)


def shapes_crops(
    split: str = "train",
    image_size: tuple[int, int] = (64, 64),
    data_dir: str | os.PathLike | None = None,
    context: float = 0.1,
    min_box_size: float = 2.0,
    shapes_image_size: int = 128,
    **source_options,
) -> ObjectCropDataset:
    """Object crops of the built-in shapes dataset, generated on first use.

    ``data_dir`` defaults to ``$VISDET_DATA`` or ``./data`` (as ``paths.data_dir``);
    ``shapes_image_size`` and ``source_options`` (num_train, num_val, seed, ...) are the
    ShapesSource settings of the generated images."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if data_dir is None:
        data_dir = os.environ.get("VISDET_DATA", "data")
    source = ShapesSource(str(data_dir), image_size=shapes_image_size, **source_options)
    s = source.splits()[split]
    return ObjectCropDataset(s.ann_file, s.image_dir, image_size, context, min_box_size)
