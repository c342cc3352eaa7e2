"""Checking a COCO annotation file as the peers (pycocotools, MMDetection) do, before any
training: every problem is a ``DatasetError`` naming the file and the entry.

Refused: a file without ``images`` / ``annotations`` / ``categories`` lists; duplicate image,
annotation or category ids; an image id or category id that is not an integer; an image
without a positive ``width`` / ``height``; a ``file_name`` that is absolute or climbs out of
the image folder (``..``); an annotation without ``id`` / ``image_id`` / ``category_id`` /
``bbox``, or whose ``image_id`` / ``category_id`` is not listed; a ``bbox`` that is not four
finite numbers, or that lies far outside its image (more than the image's own width or height
beyond a border).

Normalised in place (logged once per file): a missing ``area`` is the box area (what
pycocotools computes for results), a missing ``iscrowd`` is 0, and ``ignore: 1`` sets
``iscrowd: 1``: left out of the training targets and, for COCOeval (which reads only
``iscrowd``), a region where detections are neither true nor false positives.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from pathlib import Path, PurePosixPath, PureWindowsPath

log = logging.getLogger(__name__)

_reported: set[tuple[str, int]] = set()  # (file, mtime) whose fill-in notice was logged


class DatasetError(ValueError):
    """An annotation file is not valid COCO (the message names the file and the entry)."""


def _ids(ids: list, limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _duplicates(values: list) -> list:
    return sorted((v for v, n in Counter(values).items() if n > 1), key=repr)


def check_file_name(name) -> str | None:
    """Why ``name`` is not a safe relative image path, or None."""
    if not isinstance(name, str) or not name.strip():
        return "is not a file name"
    if (
        PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or (re.match(r"^[A-Za-z]:", name))
    ):
        return "is an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "climbs out of the image folder ('..')"
    return None


def _check_images(src: str, images: list) -> dict:
    sizes = {}
    for im in images:
        if not isinstance(im, dict) or not _is_int(im.get("id")):
            shown = im.get("id") if isinstance(im, dict) else im
            raise DatasetError(f"{src}: image entry with id {shown!r} needs an integer 'id'")
        why = check_file_name(im.get("file_name"))
        if why:
            raise DatasetError(
                f"{src}: image {im['id']} file_name {im.get('file_name')!r} {why}; file names "
                "must be relative to the image folder"
            )
        w, h = im.get("width"), im.get("height")
        if not (_is_number(w) and _is_number(h) and w > 0 and h > 0):
            raise DatasetError(
                f"{src}: image {im['id']} ({im['file_name']}) needs positive 'width' and "
                f"'height', got {w!r} x {h!r}"
            )
        sizes[im["id"]] = (float(w), float(h))
    dup = _duplicates([im["id"] for im in images])
    if dup:
        raise DatasetError(f"{src}: duplicate image ids {_ids(dup)} (each image id must be unique)")
    return sizes


def _check_bbox(src: str, ann: dict, size: tuple[float, float]) -> None:
    bbox = ann["bbox"]
    where = f"{src}: annotation {ann['id']!r} (image {ann['image_id']!r})"
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        raise DatasetError(f"{where} has bbox {bbox!r}: it must be [x, y, width, height]")
    if not all(_is_number(v) for v in bbox):
        raise DatasetError(f"{where} has bbox {bbox!r}: its values must be numbers")
    if not all(math.isfinite(v) for v in bbox):
        raise DatasetError(f"{where} has bbox {bbox!r}: its values must be finite (no NaN/inf)")
    x, y, bw, bh = bbox
    w, h = size
    if x < -w or y < -h or x + bw > 2 * w or y + bh > 2 * h or x > 2 * w or y > 2 * h:
        raise DatasetError(
            f"{where} has bbox {list(bbox)} far outside its {w:g}x{h:g} image (more than the "
            "image's size beyond its border)"
        )


def check_coco(data, src: str | Path) -> dict:
    """Check and normalise a parsed COCO dict (see the module docstring); returns it."""
    src = str(src)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DatasetError(
            f"annotation file {src} is not COCO JSON: it needs top-level "
            "'images', 'annotations' and 'categories' lists"
        )
    sizes = _check_images(src, data["images"])
    cats = data["categories"]
    bad = [c for c in cats if not isinstance(c, dict) or not _is_int(c.get("id"))]
    if bad:
        raise DatasetError(f"{src}: category {bad[0]!r} needs an integer 'id'")
    dup = _duplicates([c["id"] for c in cats])
    if dup:
        raise DatasetError(f"{src}: duplicate category ids {_ids(dup)}")
    cat_ids = {c["id"] for c in cats}
    filled = Counter()
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            raise DatasetError(f"{src}: annotation entry {ann!r} is not an object")
        for key in ("id", "image_id", "category_id", "bbox"):
            if key not in ann:
                raise DatasetError(f"{src}: annotation {ann.get('id', '?')} has no '{key}'")
        if not (_is_int(ann["id"]) or isinstance(ann["id"], str)):
            raise DatasetError(f"{src}: annotation id {ann['id']!r} is not an integer")
        if ann["category_id"] not in cat_ids:
            raise DatasetError(
                f"{src}: annotation {ann['id']} has category_id "
                f"{ann['category_id']!r}, which is not in 'categories' (ids {sorted(cat_ids)})"
            )
        if ann["image_id"] not in sizes:
            raise DatasetError(
                f"{src}: annotation {ann['id']} refers to image_id "
                f"{ann['image_id']!r}, which is not in 'images'"
            )
        _check_bbox(src, ann, sizes[ann["image_id"]])
        if "area" in ann and not (_is_number(ann["area"]) and math.isfinite(ann["area"])):
            raise DatasetError(
                f"{src}: annotation {ann['id']!r} has area {ann['area']!r}: it must be a number"
            )
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
            filled["area"] += 1
        if "iscrowd" not in ann:
            ann["iscrowd"] = 0
            filled["iscrowd"] += 1
        if ann.get("ignore") and not ann["iscrowd"]:
            ann["iscrowd"] = 1
            filled["ignore"] += 1
    dup = _duplicates([a["id"] for a in data["annotations"]])
    if dup:
        raise DatasetError(
            f"{src}: duplicate annotation ids {_ids(dup)} (each annotation id must be unique; "
            "pycocotools would keep only one of them)"
        )
    _report_filled(src, filled)
    return data


def _report_filled(src: str, filled: Counter) -> None:
    if not filled:
        return
    try:
        key = (str(Path(src).resolve()), Path(src).stat().st_mtime_ns)
    except OSError:
        key = (src, 0)
    if key in _reported:
        return
    _reported.add(key)
    parts = []
    if filled["area"]:
        parts.append(f"'area' computed from the box (width x height) for {filled['area']}")
    if filled["iscrowd"]:
        parts.append(f"'iscrowd' set to 0 for {filled['iscrowd']}")
    if filled["ignore"]:
        parts.append(f"'ignore: 1' treated as crowd (iscrowd 1) for {filled['ignore']}")
    log.warning("%s: %s annotations", Path(src).name, "; ".join(parts))
