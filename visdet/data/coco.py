"""COCO-format detection dataset read with pycocotools.

Items are ``(image, target)``: image float [3, H, W] in [0, 1]; target with ``boxes`` [N, 4]
xyxy (absolute pixels), ``labels`` int64 [N] in 1..K (contiguous, in sorted category-id
order), ``image_id`` and ``orig_size`` (H, W). Crowd annotations are left out of the targets
(COCOeval still reads them from the annotation file); degenerate boxes (no area after
clipping to the image) are dropped with one warning counting them. An image that cannot be
decoded yields ``None``; the collate function skips it and the datamodule counts it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torch.utils.data import Dataset

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """An annotation file is not valid COCO (the message names the file and the entry)."""


def _load_annotation_file(ann_file: Path) -> dict:
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {ann_file}")
    try:
        data = json.loads(ann_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"annotation file {ann_file} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not all(
        k in data for k in ("images", "annotations", "categories")
    ):
        raise DatasetError(
            f"annotation file {ann_file} is not COCO JSON: it needs top-level "
            "'images', 'annotations' and 'categories' lists"
        )
    cat_ids = {c.get("id") for c in data["categories"]}
    image_ids = {i.get("id") for i in data["images"]}
    for ann in data["annotations"]:
        for key in ("id", "image_id", "category_id", "bbox"):
            if key not in ann:
                raise DatasetError(f"{ann_file}: annotation {ann.get('id', '?')} has no '{key}'")
        if ann["category_id"] not in cat_ids:
            raise DatasetError(
                f"{ann_file}: annotation {ann['id']} has category_id "
                f"{ann['category_id']}, which is not in 'categories' "
                f"(ids {sorted(cat_ids)})"
            )
        if ann["image_id"] not in image_ids:
            raise DatasetError(
                f"{ann_file}: annotation {ann['id']} refers to image_id "
                f"{ann['image_id']}, which is not in 'images'"
            )
    return data


def load_coco(ann_file: str | os.PathLike) -> COCO:
    """A pycocotools COCO object from a validated annotation file (pycocotools' prints
    are silenced)."""
    data = _load_annotation_file(Path(ann_file))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """A COCO-format split.

    Args:
        ann_file: the instances JSON.
        image_dir: folder the ``file_name`` entries are relative to.
    """

    def __init__(self, ann_file: str | os.PathLike, image_dir: str | os.PathLike) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        self.coco = load_coco(self.ann_file)
        self.cat_ids = sorted(self.coco.getCatIds())
        self.cat_id_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.class_names = [self.coco.cats[c].get("name", str(c)) for c in self.cat_ids]
        self.image_ids = sorted(self.coco.getImgIds())
        missing = [
            self.coco.imgs[i]["file_name"]
            for i in self.image_ids
            if not (self.image_dir / self.coco.imgs[i]["file_name"]).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image files listed in {self.ann_file} are "
                f"missing from {self.image_dir}, first: {missing[0]}"
            )
        self.targets = [self._target(i) for i in self.image_ids]
        dropped = sum(t.pop("_degenerate") for t in self.targets)
        if dropped:
            log.warning(
                "%s: dropped %d degenerate boxes (no area inside the image)",
                self.ann_file.name,
                dropped,
            )

    def _target(self, image_id: int) -> dict:
        info = self.coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        boxes, labels, degenerate = [], [], 0
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0):
                continue
            x, y, bw, bh = ann["bbox"]
            x1, y1 = max(0.0, float(x)), max(0.0, float(y))
            x2, y2 = min(float(w), float(x + bw)), min(float(h), float(y + bh))
            if x2 <= x1 or y2 <= y1:
                degenerate += 1
                continue
            boxes.append([x1, y1, x2, y2])
            labels.append(self.cat_id_to_label[ann["category_id"]])
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": image_id,
            "orig_size": (h, w),
            "_degenerate": degenerate,
        }

    def __len__(self) -> int:
        return len(self.image_ids)

    def aspect_ratios(self) -> list[float]:
        return [self.coco.imgs[i]["width"] / self.coco.imgs[i]["height"] for i in self.image_ids]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict] | None:
        image_id = self.image_ids[index]
        path = self.image_dir / self.coco.imgs[image_id]["file_name"]
        try:
            with Image.open(path) as im:
                array = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
        except (OSError, UnidentifiedImageError) as e:
            log.warning("skipping unreadable image %s: %s", path, e)
            return None
        image = torch.from_numpy(array).permute(2, 0, 1).float().div_(255)
        target = dict(self.targets[index])
        if tuple(image.shape[1:]) != target["orig_size"]:
            log.warning(
                "%s is %s but %s says %s; using the file's size",
                path,
                tuple(image.shape[1:]),
                self.ann_file.name,
                target["orig_size"],
            )
            target["orig_size"] = tuple(image.shape[1:])
        return image, target
