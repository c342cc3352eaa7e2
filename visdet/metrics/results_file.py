"""COCO results files (a JSON list of detections) read and checked before COCOeval sees them.

Each entry needs ``image_id`` and ``category_id`` (integers naming an image and a category of
the annotations), ``score`` (a finite number) and, for box evaluation, ``bbox`` [x, y, w, h]
(4 finite numbers, w, h >= 0); for mask evaluation ``segmentation`` (an RLE {size, counts} of
the image's size, or polygons). What is wrong is one ``ResultsFileError`` line naming the file,
how many entries are wrong and the first few of them. An empty list is valid (0 detections).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from visdet.io.strict_json import read_json_file

__all__ = ["ResultsFileError", "load_results", "read_results"]

_SHOWN = 5  # ids or entries named in a message


class ResultsFileError(ValueError):
    """A results file (or list) that COCOeval cannot evaluate against the annotations."""


def load_results(
    path_or_list: str | os.PathLike | list[dict],
    coco_gt,
    iou_type: str = "bbox",
    annotations_name: str | None = None,
    results_name: str | None = None,
) -> list[dict]:
    """Checked copies of the detections in ``path_or_list`` (a results JSON or its parsed
    list), for evaluation against ``coco_gt`` (a pycocotools COCO object or an annotation
    file path).

    Returns new dicts with ``image_id``, ``category_id`` (int), ``score`` (float), ``bbox``
    (list of 4 floats, where given) and, for "segm", ``segmentation`` as a compressed RLE;
    the caller's dicts are not modified. ``annotations_name`` names the annotations in
    messages (default: the file name, or "the annotations" for an object), ``results_name``
    the results when a list is given (default "results").
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if isinstance(coco_gt, (str, os.PathLike)):
        from visdet.data.coco import load_coco

        annotations_name = annotations_name or Path(coco_gt).name
        coco_gt = load_coco(coco_gt)
    annotations_name = annotations_name or "the annotations"
    src, entries = _read(path_or_list)
    src = results_name or src
    dets, malformed = [], []
    for index, entry in enumerate(entries):
        det, problem = _checked(entry, iou_type)
        if problem is None:
            dets.append(det)
        else:
            malformed.append(f"entry {index}: {problem}")
    if malformed:
        raise ResultsFileError(
            f"{src}: {len(malformed)} of {len(entries)} detections are malformed: "
            f"{'; '.join(malformed[:3])}{_more(malformed, 3)}"
        )
    _check_known(src, dets, "image_id", "image", set(coco_gt.imgs), annotations_name)
    _check_known(src, dets, "category_id", "category", set(coco_gt.cats), annotations_name)
    if iou_type == "segm":
        for det in dets:
            det["segmentation"] = _rle(src, det, coco_gt.imgs[det["image_id"]])
    return dets


def read_results(path: str | os.PathLike) -> list:
    """The parsed list of a results JSON (ResultsFileError for bad JSON or not a list); its
    entries are checked by ``load_results``."""
    return _read(path)[1]


def _read(path_or_list) -> tuple[str, list]:
    if isinstance(path_or_list, (str, os.PathLike)):
        path = Path(path_or_list)
        data = read_json_file(path, "results file", ResultsFileError)
        src = path.name
    else:
        data, src = path_or_list, "results"
    if not isinstance(data, list):
        raise ResultsFileError(
            f"{src}: a COCO results file is a JSON list of detections, got {type(data).__name__}"
        )
    return src, data


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_finite(v) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating))
        and not isinstance(v, bool)
        and math.isfinite(v)
    )


def _is_box(box) -> bool:
    """4 finite numbers; the common case (a JSON list of floats) is tested first, fast."""
    if type(box) is list and len(box) == 4 and all(type(v) is float for v in box):
        return all(map(math.isfinite, box))
    return (
        isinstance(box, (list, tuple, np.ndarray))
        and len(box) == 4
        and all(_is_finite(v) for v in box)
    )


def _checked(entry, iou_type: str) -> tuple[dict | None, str | None]:
    """(the normalised detection, None) or (None, what is wrong with it)."""
    if not isinstance(entry, dict):
        return None, f"is {type(entry).__name__}, not an object"
    for key in ("image_id", "category_id", "score"):
        if key not in entry:
            return None, f"has no '{key}'"
    if not _is_int(entry["image_id"]):
        return None, f"image_id {entry['image_id']!r} is not an integer"
    if not _is_int(entry["category_id"]):
        return None, f"category_id {entry['category_id']!r} is not an integer"
    if not _is_finite(entry["score"]):
        return None, f"score {entry['score']!r} is not a finite number"
    det = {
        "image_id": int(entry["image_id"]),
        "category_id": int(entry["category_id"]),
        "score": float(entry["score"]),
    }
    if "bbox" in entry or iou_type == "bbox":
        box = entry.get("bbox")
        if not _is_box(box):
            return None, f"bbox {box!r} is not 4 finite numbers [x, y, w, h]"
        if box[2] < 0 or box[3] < 0:
            return None, f"bbox {list(box)} has a negative width or height"
        det["bbox"] = [float(v) for v in box]
    if iou_type == "segm":
        seg = entry.get("segmentation")
        is_rle = isinstance(seg, dict) and "size" in seg and "counts" in seg
        is_polygons = (
            isinstance(seg, list)
            and len(seg) > 0
            and all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg)
        )
        if not (is_rle or is_polygons):
            return None, "has no 'segmentation' (an RLE {size, counts} or a list of polygons)"
        det["segmentation"] = seg
    return det, None


def _check_known(src: str, dets: list[dict], key: str, what: str, known: set, ann: str) -> None:
    bad = [d[key] for d in dets if d[key] not in known]
    if not bad:
        return
    unknown = sorted(set(bad))
    raise ResultsFileError(
        f"{src}: {len(bad)} detections name {what} ids not in {ann}: "
        f"{', '.join(map(str, unknown[:_SHOWN]))}{_more(unknown, _SHOWN)}"
    )


def _more(items: list, shown: int) -> str:
    return f" (and {len(items) - shown} more)" if len(items) > shown else ""


def _rle(src: str, det: dict, image: dict) -> dict:
    """The detection's segmentation as a compressed RLE of its image's size."""
    seg, h, w = det["segmentation"], image["height"], image["width"]
    if isinstance(seg, dict):
        if list(seg["size"]) != [h, w]:
            raise ResultsFileError(
                f"{src}: a detection on image {det['image_id']} has an RLE of size "
                f"{list(seg['size'])}, but the image is {h}x{w} (size is [height, width])"
            )
        if isinstance(seg["counts"], (str, bytes)):
            return seg
        return mask_utils.frPyObjects(seg, h, w)  # uncompressed RLE -> compressed
    return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))  # polygons
