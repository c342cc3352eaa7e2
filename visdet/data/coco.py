"""COCO-format detection dataset read with pycocotools.

Items are ``(image, target)``: image float [3, H, W] in [0, 1] (decoded as people see it, see
``visdet.data.image_decode``); target with ``boxes`` [N, 4] xyxy (absolute pixels), ``labels``
int64 [N] in 1..K (contiguous, in sorted category-id order), ``image_id`` and ``orig_size``
(H, W). The annotation file is checked first (``visdet.data.coco_checks``). Crowd annotations
(and ``ignore: 1``) are left out of the targets (COCOeval still reads them from the annotation
file); degenerate boxes (zero area, under 1 px wide or high after clipping to the image, or
nothing inside it) are dropped with one warning counting them; images without annotations
stay as negatives.

Every image's header is read when the dataset is built: its size must be the annotation's
``width``/``height`` after its EXIF orientation. An image that matches only without the
rotation (annotated on the raw pixels) is used unrotated, with one warning counting them; any
other mismatch is a ``DatasetError`` naming the image and both sizes. An image that cannot be
decoded (broken, truncated, above the decompression-bomb limit) yields ``SkippedImage``; the
collate function leaves it out and the datamodule names it.

The header scan and the targets are cached (``visdet.data.index_cache``, ``cache_dir``), so a
second start of a large split reads one JSON file instead of every image header.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from visdet.data.coco_checks import DatasetError, check_coco
from visdet.data.image_decode import (
    SWAPS_SIDES,
    UnreadableImage,
    decode_image,
    default_max_pixels,
    read_header,
)
from visdet.data.index_cache import (
    BOX_DROP_KINDS,
    DROP_KINDS,
    StartupIndex,
    cache_key,
    entry_path,
    load_index,
    resolve_cache_dir,
    save_index,
)
from visdet.data.instance_masks import annotation_rle, degenerate_polygons, merge_rles
from visdet.data.remote import FetchedFile, RemoteFolder
from visdet.io.strict_json import read_json_file

log = logging.getLogger(__name__)

__all__ = ["CocoDetection", "DatasetError", "SkippedImage", "load_coco"]


def _load_annotation_file(ann_file: Path | FetchedFile) -> dict:
    remote = isinstance(ann_file, FetchedFile)
    what = f"annotation file {ann_file}, fetched as" if remote else "annotation file"
    return check_coco(read_json_file(Path(ann_file), what, DatasetError), ann_file)


def load_coco(ann_file: str | os.PathLike) -> COCO:
    """A pycocotools COCO object from a checked annotation file (pycocotools' prints
    are silenced); a ``FetchedFile`` is read from its local copy and named by its URL."""
    data = _load_annotation_file(ann_file if isinstance(ann_file, FetchedFile) else Path(ann_file))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@dataclass(frozen=True)
class SkippedImage:
    """What the dataset gives for an image it cannot decode: the file and why."""

    path: str
    reason: str


def _listing(items: list[str], limit: int = 5) -> str:
    return "; ".join(items[:limit]) + (
        f"; and {len(items) - limit} more" if len(items) > limit else ""
    )


class CocoDetection(Dataset):
    """A COCO-format split.

    Args:
        ann_file: the instances JSON (or a ``FetchedFile``: a remote one's local copy).
        image_dir: folder the ``file_name`` entries are relative to, or a ``RemoteFolder``
            (visdet.data.remote): each image is fetched into its cache on first read, which
            is the start-up header scan (FETCH_THREADS at a time); training then reads the
            cached copies. The start-up index cache is not used for remote folders.
        max_image_pixels: images with more pixels are skipped (decompression-bomb limit);
            None: Pillow's ``Image.MAX_IMAGE_PIXELS``.
        cache_dir: folder of the start-up index cache; "auto": ``$VISDET_CACHE`` or
            ``~/.cache/visdet/index`` for splits of 1000+ images; None or "off": no cache.
        masks: also give each target its objects' instance masks as compressed RLE
            (``masks_rle``, one per box, in order) and the union of its crowd regions
            (``crowd_rle`` or None), rasterised on the device (visdet.data.instance_masks).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        max_image_pixels: int | None = None,
        cache_dir: str | os.PathLike | None = "auto",
        masks: bool = False,
    ) -> None:
        self.masks = masks
        self.ann_file = ann_file if isinstance(ann_file, FetchedFile) else Path(ann_file)
        self.remote = isinstance(image_dir, RemoteFolder)
        self.image_dir = image_dir if self.remote else Path(image_dir)
        if not self.remote and not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        if max_image_pixels is not None and max_image_pixels < 1:
            raise ValueError(f"data.max_image_pixels must be >= 1, got {max_image_pixels}")
        self.max_image_pixels = (
            default_max_pixels() if max_image_pixels is None else int(max_image_pixels)
        )
        self.coco = load_coco(self.ann_file)
        self.cat_ids = sorted(self.coco.getCatIds())
        self.cat_id_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.class_names = [self.coco.cats[c].get("name", str(c)) for c in self.cat_ids]
        self.image_ids = sorted(self.coco.getImgIds())
        # a remote folder: the first read of every image, in threads ({name: local copy} of
        # those found; the scan names the missing)
        self._local: dict[str, Path] = {}
        if self.remote:
            names = [self.coco.imgs[i]["file_name"] for i in self.image_ids]
            self._local = self.image_dir.fetch_many(names)
            cache_dir = None
        index = self._startup_index(resolve_cache_dir(cache_dir, len(self.image_ids)))
        self.apply_orientation = index.apply_orientation
        self.unreadable = index.unreadable  # index -> why its header cannot be read
        self.targets = index.targets
        self._report_scan(index.raw)
        self._report_dropped(index.dropped)

    def _startup_index(self, cache_dir: Path | None) -> StartupIndex:
        """The header scan and the targets: from the cache when its key matches, else
        computed (and cached)."""
        if cache_dir is None:
            return self._build_index()
        names = [self.coco.imgs[i]["file_name"] for i in self.image_ids]
        key = cache_key(
            Path(self.ann_file), self.image_dir, names, self.max_image_pixels, self.masks
        )
        if key is None:  # an image is missing: the scan names it
            return self._build_index()
        path = entry_path(cache_dir, Path(self.ann_file), self.image_dir, self.masks)
        infos = [self.coco.imgs[i] for i in self.image_ids]
        sizes = [(int(info["height"]), int(info["width"])) for info in infos]
        index = load_index(path, key, self.image_ids, sizes)
        if index is None:
            index = self._build_index()
            save_index(path, key, index)
        return index

    def _build_index(self) -> StartupIndex:
        apply_orientation, unreadable, raw = self._scan_images()
        targets = [self._target(i) for i in self.image_ids]
        per_image = [t.pop("_dropped") for t in targets]
        dropped = {k: sum(d[k] for d in per_image) for k in DROP_KINDS}
        return StartupIndex(apply_orientation, unreadable, raw, targets, dropped)

    def _path(self, image_id: int) -> Path:
        """The image's file (for a remote folder its local copy, fetched at start-up)."""
        name = self.coco.imgs[image_id]["file_name"]
        if not self.remote:
            return self.image_dir / name
        if name not in self._local:
            url = self.image_dir.url_of(name)
            raise FileNotFoundError(f"{self.image_dir.what} not found: {url}")
        return self._local[name]

    def _name(self, image_id: int) -> str:
        """The image as messages name it: its path or URL."""
        name = self.coco.imgs[image_id]["file_name"]
        return self.image_dir.url_of(name) if self.remote else str(self.image_dir / name)

    def _scan_images(self) -> tuple[list[bool], dict[int, str], list[str]]:
        """Headers of every image: (orientation to apply per image, unreadable index -> why,
        file names used unrotated); a missing file or a wrong size raises."""
        missing, wrong, raw = [], [], []
        apply_orientation: list[bool] = []
        unreadable: dict[int, str] = {}
        for index, image_id in enumerate(self.image_ids):
            info = self.coco.imgs[image_id]
            apply_orientation.append(True)
            try:
                header = read_header(self._path(image_id), self.max_image_pixels)
            except FileNotFoundError:
                missing.append(info["file_name"])
                continue
            except UnreadableImage as e:
                unreadable[index] = str(e)
                continue
            want = (info["width"], info["height"])
            if header.oriented_size == want:
                continue
            if header.size == want:  # annotated on the raw, unrotated pixels
                apply_orientation[index] = False
                raw.append(info["file_name"])
                continue
            (w, h), (ow, oh) = header.size, header.oriented_size
            turned = (
                f" ({ow}x{oh} after its EXIF orientation {header.orientation})"
                if header.orientation in SWAPS_SIDES
                else ""
            )
            wrong.append(
                f"{self._name(image_id)} is {w}x{h}{turned} but the annotation says "
                f"{want[0]:g}x{want[1]:g} (width x height)"
            )
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} image files listed in {self.ann_file} are "
                f"missing from {self.image_dir}, first: {missing[0]}"
            )
        if wrong:
            raise DatasetError(
                f"{self.ann_file}: {len(wrong)} images do not have the size their annotation "
                f"gives: {_listing(wrong)}"
            )
        return apply_orientation, unreadable, raw

    def _report_scan(self, raw: list[str]) -> None:
        if raw:
            log.warning(
                "%s: %d images match their annotated width/height only without their EXIF "
                "rotation (annotated on the raw pixels), so they are used unrotated: %s",
                self.ann_file.name,
                len(raw),
                _listing(raw),
            )
        if self.unreadable:
            shown = [
                f"{self._name(self.image_ids[i])} ({why})" for i, why in self.unreadable.items()
            ]
            log.warning(
                "%s: %d images cannot be read and will be skipped: %s",
                self.ann_file.name,
                len(shown),
                _listing(shown),
            )

    def _target(self, image_id: int) -> dict:
        info = self.coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        kept, dropped = self._kept_annotations(image_id)
        boxes = [box for _, box, _ in kept]
        labels = [self.cat_id_to_label[ann["category_id"]] for ann, _, _ in kept]
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": image_id,
            "orig_size": (h, w),
            "_dropped": dropped,
        }

    def _kept_annotations(self, image_id: int) -> tuple[list[tuple], dict]:
        """The annotations that become targets, each with its clipped box xyxy and (with
        masks on) its mask's RLE, else None; and the dropped ones counted per kind."""
        info = self.coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        kept = []
        dropped = dict.fromkeys(DROP_KINDS, 0)
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann.get("iscrowd", 0) or ann.get("ignore", 0):
                continue
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            if bw <= 0 or bh <= 0 or float(ann.get("area", bw * bh)) <= 0:
                dropped["zero"] += 1
                continue
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(w), x + bw), min(float(h), y + bh)
            if x2 <= x1 or y2 <= y1:
                dropped["outside"] += 1
                continue
            if x2 - x1 < 1 or y2 - y1 < 1:
                dropped["subpixel"] += 1
                continue
            rle = None
            if self.masks:
                dropped["polygons"] += degenerate_polygons(ann.get("segmentation"))
                rle = self._object_rle(ann, image_id, h, w)
                if rle is None or mask_utils.area(rle) == 0:
                    dropped["no_mask"] += 1
                    continue
            kept.append((ann, [x1, y1, x2, y2], rle))
        return kept, dropped

    def _object_rle(self, ann: dict, image_id: int, height: int, width: int) -> dict | None:
        """The annotation's mask as one compressed RLE (None: no polygon of 3 points);
        DatasetError naming the annotation when it has none or it is malformed."""
        where = f"{self.ann_file}: annotation {ann.get('id')} of image {image_id}"
        if "segmentation" not in ann:
            raise DatasetError(
                f"{where} has no 'segmentation' (instance masks are on: data.masks=true)"
            )
        try:
            return annotation_rle(ann["segmentation"], height, width, where)
        except ValueError as e:
            raise DatasetError(str(e)) from None

    def _mask_rles(self, image_id: int) -> tuple[list[dict], dict | None]:
        """(one RLE per target object, in the targets' order; the union of the image's
        crowd regions or None)."""
        info = self.coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        kept, _ = self._kept_annotations(image_id)  # objects with mask pixels
        rles = [rle for _, _, rle in kept]
        crowd = [
            self._object_rle(a, image_id, h, w)
            for a in self.coco.imgToAnns.get(image_id, [])
            if a.get("iscrowd", 0) and "segmentation" in a
        ]
        return rles, merge_rles([r for r in crowd if r is not None])

    def _report_dropped(self, total: dict[str, int]) -> None:
        self.dropped_boxes = sum(total[k] for k in BOX_DROP_KINDS)
        self.dropped_polygons = total["polygons"]
        if self.dropped_boxes:
            no_mask = f", {total['no_mask']} without mask pixels in the image" if self.masks else ""
            log.warning(
                "%s: dropped %d degenerate boxes (%d with zero area, %d under 1 px wide or high, "
                "%d with no area inside the image%s); evaluation against this file still "
                "counts them as ground truth, as pycocotools does",
                self.ann_file.name,
                self.dropped_boxes,
                total["zero"],
                total["subpixel"],
                total["outside"],
                no_mask,
            )
        if self.dropped_polygons:
            log.warning(
                "%s: dropped %d degenerate polygons (fewer than 3 points) from the objects' "
                "masks", self.ann_file.name, self.dropped_polygons,
            )  # fmt: skip

    def num_boxes(self) -> int:
        return sum(len(t["labels"]) for t in self.targets)

    def __len__(self) -> int:
        return len(self.image_ids)

    def aspect_ratios(self) -> list[float]:
        return [self.coco.imgs[i]["width"] / self.coco.imgs[i]["height"] for i in self.image_ids]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict] | SkippedImage:
        image_id = self.image_ids[index]
        name = self._name(image_id)
        if index in self.unreadable:
            return SkippedImage(name, self.unreadable[index])
        try:
            path = self._path(image_id)
            image = decode_image(path, self.apply_orientation[index], self.max_image_pixels)
        except UnreadableImage as e:
            return SkippedImage(name, str(e))
        except FileNotFoundError as e:  # a remote image gone since the start-up scan
            return SkippedImage(name, str(e))
        target = dict(self.targets[index])
        if self.masks:
            target["masks_rle"], target["crowd_rle"] = self._mask_rles(image_id)
        if tuple(image.shape[1:]) != target["orig_size"]:  # the file changed since the scan
            raise DatasetError(
                f"{name} decodes to {image.shape[2]}x{image.shape[1]} but {self.ann_file} says "
                f"{target['orig_size'][1]}x{target['orig_size'][0]} (width x height)"
            )
        return image, target
