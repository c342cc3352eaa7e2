"""Checking a detection dataset before training (``visdet data check``): every annotation and
every image header is read, and every problem is counted in one pass (never stopping at the
first), each with a severity and the first few examples naming the file.

Errors (would break or silently damage training): ``invalid_entry`` (an image or annotation
entry without the keys or values COCO needs, or an annotation naming an image that is not
listed), ``bad_file_name``, ``missing_file``, ``unreadable_image``, ``size_mismatch`` (the
file's size, EXIF orientation applied as training does, differs from the annotation's
width x height), ``box_out_of_bounds`` (more than 1 px outside the image), ``degenerate_box``
(w or h <= 0), ``unknown_category``, ``duplicate_image_id``, ``duplicate_file_name``,
``duplicate_annotation_id``.

Warnings: ``tiny_box`` (w or h < 4 px), ``extreme_aspect_ratio`` (long side / short side > 10),
``duplicate_box`` (same class, IoU > 0.95 within an image; one count per pair),
``class_imbalance`` (largest / smallest non-empty class > 20), ``empty_class`` (a category
without boxes in this split), ``image_without_labels``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from visdet.data.coco_checks import DatasetError, check_file_name
from visdet.data.image_decode import UnreadableImage, default_max_pixels, read_header
from visdet.data.remote import RemoteFolder

ERROR, WARNING = "error", "warning"
SEVERITY = {
    "invalid_entry": ERROR,
    "bad_file_name": ERROR,
    "missing_file": ERROR,
    "unreadable_image": ERROR,
    "size_mismatch": ERROR,
    "box_out_of_bounds": ERROR,
    "degenerate_box": ERROR,
    "unknown_category": ERROR,
    "duplicate_image_id": ERROR,
    "duplicate_file_name": ERROR,
    "duplicate_annotation_id": ERROR,
    "tiny_box": WARNING,
    "extreme_aspect_ratio": WARNING,
    "duplicate_box": WARNING,
    "class_imbalance": WARNING,
    "empty_class": WARNING,
    "image_without_labels": WARNING,
}
EXAMPLES = 5  # examples kept per problem
OUT_OF_BOUNDS_PX = 1.0
TINY_PX = 4.0
MAX_ASPECT = 10.0
DUPLICATE_IOU = 0.95
MAX_IMBALANCE = 20.0


class Problems:
    """Counts and first examples per problem kind."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, example: str) -> None:
        if kind not in SEVERITY:
            raise ValueError(f"unknown problem kind {kind!r}; known: {', '.join(SEVERITY)}")
        self.counts[kind] += 1
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(example)

    def as_dict(self) -> dict:
        """``{kind: {"severity", "count", "examples"}}``, errors first, in SEVERITY order."""
        kinds = [k for k in SEVERITY if self.counts[k]]
        kinds.sort(key=lambda k: SEVERITY[k] != ERROR)
        return {
            k: {"severity": SEVERITY[k], "count": self.counts[k], "examples": self.examples[k]}
            for k in kinds
        }


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _read_size(path: Path | None) -> tuple[str, tuple[int, int] | str]:
    """("ok", oriented (w, h)) / ("missing_file" | "unreadable_image", why); None: a remote
    file that is not there."""
    if path is None:
        return "missing_file", "file not found"
    try:
        header = read_header(path, default_max_pixels())
    except FileNotFoundError:
        return "missing_file", "file not found"
    except UnreadableImage as e:
        return "unreadable_image", str(e)
    except IsADirectoryError:
        return "unreadable_image", "is a folder"
    return "ok", header.oriented_size


def read_image_sizes(
    paths: list[Path | None], workers: int = 4, desc: str = "headers"
) -> list[tuple[str, tuple[int, int] | str]]:
    """``_read_size`` of every path, in order, read by ``workers`` threads with a progress bar."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_read_size, paths), total=len(paths), desc=desc, unit="img"))


def _iou_pairs(boxes: np.ndarray) -> int:
    """Number of pairs i < j with IoU > DUPLICATE_IOU; boxes [N, 4] as x1, y1, x2, y2."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.clip(rb - lt, 0.0, None).prod(axis=2)
    union = area[:, None] + area[None, :] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return int(np.triu(iou > DUPLICATE_IOU, k=1).sum())


def _image_paths(image_dir: Path | RemoteFolder, names: list[str]) -> list[Path | None]:
    """The local file of each name; for a remote folder its fetched copy (None: not there)."""
    if not isinstance(image_dir, RemoteFolder):
        return [image_dir / n for n in names]
    got = image_dir.fetch_many(names)
    return [got.get(n) for n in names]


def _check_images(coco: dict, image_dir, split: str, workers: int, problems: Problems):
    """Valid image entries by id ({id: entry}) and their oriented file sizes ({id: (w, h)})."""
    images: dict = {}
    for im in coco["images"]:
        if not isinstance(im, dict) or not _is_int(im.get("id")):
            problems.add("invalid_entry", f"image entry {str(im)[:80]}: needs an integer 'id'")
            continue
        name = im.get("file_name")
        if check_file_name(name):
            problems.add(
                "bad_file_name", f"image {im['id']} file_name {name!r}: {check_file_name(name)}"
            )
            continue
        w, h = im.get("width"), im.get("height")
        if not (_is_number(w) and _is_number(h) and w > 0 and h > 0):
            problems.add("invalid_entry", f"{name}: needs positive width/height, got {w!r} x {h!r}")
            continue
        if im["id"] in images:
            problems.add(
                "duplicate_image_id",
                f"{name}: id {im['id']} also used by {images[im['id']]['file_name']}",
            )
            continue
        images[im["id"]] = im
    names = Counter(im["file_name"] for im in images.values())
    for name, n in names.items():
        if n > 1:
            problems.add("duplicate_file_name", f"{name}: listed {n} times")
    ids = list(images)
    paths = _image_paths(image_dir, [images[i]["file_name"] for i in ids])
    results = read_image_sizes(paths, workers, split)
    sizes = {}
    for image_id, (status, value) in zip(ids, results):
        im = images[image_id]
        if status != "ok":
            problems.add(status, f"{im['file_name']}: {value}")
            continue
        sizes[image_id] = value
        if tuple(value) != (im["width"], im["height"]):
            problems.add(
                "size_mismatch",
                f"{im['file_name']}: file is {value[0]}x{value[1]}, "
                f"annotation says {im['width']}x{im['height']}",
            )
    return images, sizes


def _check_box(ann: dict, im: dict, problems: Problems) -> bool:
    """Checks one valid-looking box; True when it is usable (not degenerate)."""
    x, y, bw, bh = ann["bbox"]
    where = f"{im['file_name']}: annotation {ann['id']} bbox {[round(v, 2) for v in ann['bbox']]}"
    if bw <= 0 or bh <= 0:
        problems.add("degenerate_box", f"{where} has w or h <= 0")
        return False
    w, h, px = im["width"], im["height"], OUT_OF_BOUNDS_PX
    if x < -px or y < -px or x + bw > w + px or y + bh > h + px:
        problems.add("box_out_of_bounds", f"{where} is outside the {w}x{h} image")
    if min(bw, bh) < TINY_PX:
        problems.add("tiny_box", f"{where} is under {TINY_PX:g} px")
    if max(bw / bh, bh / bw) > MAX_ASPECT:
        problems.add("extreme_aspect_ratio", f"{where} has aspect {max(bw / bh, bh / bw):.1f}")
    return True


def check_dataset(coco: dict, image_dir, split: str, workers: int = 4) -> dict:
    """The report of one split: ``{"split", "image_dir", "counts", "problems", "distributions"}``.

    ``image_dir``: a folder, or a ``RemoteFolder`` (visdet.data.remote) whose images are
    fetched into its cache and checked there.
    ``counts``: images (valid entries), annotations (entries), boxes (usable ones, counted
    per class), images_without_labels, per_class ({name: boxes}, every
    category), box_sizes ({small, medium, large}: sqrt area < 32, < 96, else).
    ``problems``: ``Problems.as_dict()``. ``distributions`` (for the histograms): box_sqrt_area,
    aspect_ratio (w / h), objects_per_image, image_sizes ([w, h]) lists.
    """
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DatasetError(
            f"split {split}: not COCO JSON: needs top-level 'images', 'annotations' and "
            "'categories' lists"
        )
    if not isinstance(image_dir, RemoteFolder):  # a remote one: each image is fetched
        image_dir = Path(image_dir)
        if not image_dir.is_dir():
            raise FileNotFoundError(f"split {split}: image folder not found: {image_dir}")
    problems = Problems()
    cat_names = {}
    for c in coco["categories"]:
        if not isinstance(c, dict) or not _is_int(c.get("id")) or c["id"] in cat_names:
            problems.add("invalid_entry", f"category {str(c)[:80]}: needs a unique integer 'id'")
            continue
        cat_names[c["id"]] = str(c.get("name", c["id"]))
    images, sizes = _check_images(coco, image_dir, split, workers, problems)

    per_class = Counter()
    per_image = Counter()
    boxes_by_group = defaultdict(list)  # (image id, category id) -> [x1, y1, x2, y2]
    sqrt_areas, aspects = [], []
    ann_ids = Counter()
    for ann in coco["annotations"]:
        if not isinstance(ann, dict) or any(
            k not in ann for k in ("id", "image_id", "category_id", "bbox")
        ):
            problems.add(
                "invalid_entry",
                f"annotation {str(ann)[:80]}: needs id, image_id, category_id and bbox",
            )
            continue
        if not all(
            _is_int(ann[k]) or isinstance(ann[k], str) for k in ("id", "image_id", "category_id")
        ):
            problems.add(
                "invalid_entry", f"annotation {str(ann)[:80]}: ids must be integers or strings"
            )
            continue
        ann_ids[ann["id"]] += 1
        im = images.get(ann["image_id"])
        if im is None:
            problems.add(
                "invalid_entry",
                f"annotation {ann['id']}: image_id {ann['image_id']!r} is not a valid listed image",
            )
            continue
        if ann["category_id"] not in cat_names:
            problems.add(
                "unknown_category",
                f"{im['file_name']}: annotation {ann['id']} has "
                f"category_id {ann['category_id']!r}, not in categories",
            )
            continue
        bbox = ann["bbox"]
        if not (isinstance(bbox, list | tuple) and len(bbox) == 4 and all(map(_is_number, bbox))):
            problems.add(
                "invalid_entry",
                f"{im['file_name']}: annotation {ann['id']} bbox "
                f"{bbox!r} is not four finite numbers",
            )
            continue
        if not _check_box(ann, im, problems):
            continue
        x, y, bw, bh = bbox
        per_class[ann["category_id"]] += 1
        per_image[ann["image_id"]] += 1
        boxes_by_group[(ann["image_id"], ann["category_id"])].append([x, y, x + bw, y + bh])
        sqrt_areas.append(math.sqrt(bw * bh))
        aspects.append(bw / bh)
    for ann_id, n in ann_ids.items():
        if n > 1:
            problems.add("duplicate_annotation_id", f"annotation id {ann_id!r} used {n} times")
    for (image_id, cat_id), group in boxes_by_group.items():
        if len(group) > 1:
            for _ in range(_iou_pairs(np.asarray(group, dtype=np.float64))):
                problems.add(
                    "duplicate_box",
                    f"{images[image_id]['file_name']}: two "
                    f"{cat_names[cat_id]} boxes with IoU > {DUPLICATE_IOU}",
                )
    without = [i for i in images if per_image[i] == 0]
    for image_id in without:
        problems.add("image_without_labels", f"{images[image_id]['file_name']}")
    for cat_id, name in cat_names.items():
        if per_class[cat_id] == 0:
            problems.add("empty_class", f"class {name!r} (id {cat_id}) has no boxes")
    present = [n for n in per_class.values() if n > 0]
    if present and max(present) / min(present) > MAX_IMBALANCE:
        top = max(per_class, key=per_class.get)
        low = min((c for c in per_class if per_class[c]), key=per_class.get)
        problems.add(
            "class_imbalance",
            f"{cat_names[top]!r} has {per_class[top]} boxes, "
            f"{cat_names[low]!r} {per_class[low]} (ratio > {MAX_IMBALANCE:g})",
        )
    return {
        "split": split,
        "image_dir": str(image_dir),
        "counts": {
            "images": len(images),
            "annotations": len(coco["annotations"]),
            "boxes": sum(per_class.values()),
            "images_without_labels": len(without),
            "per_class": {cat_names[c]: per_class[c] for c in cat_names},
            "box_sizes": {
                "small": sum(s < 32 for s in sqrt_areas),
                "medium": sum(32 <= s < 96 for s in sqrt_areas),
                "large": sum(s >= 96 for s in sqrt_areas),
            },
        },
        "problems": problems.as_dict(),
        "distributions": {
            "box_sqrt_area": sqrt_areas,
            "aspect_ratio": aspects,
            "objects_per_image": [per_image[i] for i in images],
            "image_sizes": [list(sizes[i]) for i in images if i in sizes],
        },
    }


def severity_counts(report: dict) -> dict[str, int]:
    """``{"error": n, "warning": m}``: the problem counts of one split's report by severity."""
    out = {ERROR: 0, WARNING: 0}
    for p in report["problems"].values():
        out[p["severity"]] += p["count"]
    return out
