"""Pascal VOC: ``Annotations/<id>.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt`` (one
image id a line; ``image_sets="Segmentation"`` reads ``ImageSets/Segmentation/`` instead, the
images with instance masks).

Instance masks: where ``SegmentationObject/<id>.png`` exists (a palette PNG whose value i marks
the i-th object of the XML, 255 the void border), each object gets its pixels as a COCO RLE
``segmentation`` (an object without pixels gets an empty one, which instance-mask training
drops and counts); a PNG of another size than the image is a problem named.

Pixel convention: VOC corners are 1-based inclusive pixel indices, so a box covering the
whole W x H image is ``xmin=1, xmax=W``. As Detectron2's ``load_voc_instances`` does, they
become ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` (width ``xmax - xmin + 1``).
``difficult`` objects are kept as ordinary boxes (iscrowd 0, trained on and evaluated) with
``"difficult": 1``; ``truncated`` is kept the same way. Image sizes come from the image files,
not from the XML's ``<size>``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from visdet.data.coco_checks import DatasetError
from visdet.data.formats.format_read import FormatRead, add_box, add_image, new_coco
from visdet.data.image_decode import UnreadableImage, read_header

CORNERS = ("xmin", "ymin", "xmax", "ymax")


def split_ids(root: Path, split: str, image_sets: str = "Main") -> list[str]:
    """The image ids listed in ``ImageSets/<image_sets>/<split>.txt``."""
    path = root / "ImageSets" / image_sets / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"VOC split file not found: {path}")
    return [
        line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _flag(obj: ET.Element, tag: str) -> int:
    text = obj.findtext(tag)
    return int(float(text)) if text and text.strip() else 0


def _objects(xml: str, tree: ET.Element, problems: list[str]) -> list[tuple[str, list, dict]]:
    """(name, [xmin, ymin, xmax, ymax], flags with ``"_index"``: its 1-based place in the
    XML) of every well-formed object."""
    out = []
    for i, obj in enumerate(tree.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        box = obj.find("bndbox")
        try:
            corners = [float(box.findtext(k)) for k in CORNERS] if box is not None else None
            flags = {"difficult": _flag(obj, "difficult"), "truncated": _flag(obj, "truncated")}
        except (TypeError, ValueError):
            corners = None
        if not name or corners is None:
            problems.append(f"{xml} object {i}: needs a <name> and numeric <bndbox> corners")
            continue
        out.append((name, corners, {**flags, "_index": i}))
    return out


def _instance_masks(root: Path, image_id: str, size: tuple[int, int], problems: list[str]):
    """The ``SegmentationObject`` PNG of ``image_id`` as an int array [H, W], or None when
    there is none (or it is unreadable / of another size: a problem named)."""
    path = root / "SegmentationObject" / f"{image_id}.png"
    if not path.is_file():
        return None
    try:
        with Image.open(path) as png:
            if png.mode not in ("P", "L"):
                problems.append(f"SegmentationObject/{image_id}.png: expected a palette PNG "
                                f"of object indices, got mode {png.mode}")  # fmt: skip
                return None
            values = np.asarray(png)
    except (OSError, ValueError) as e:
        problems.append(f"SegmentationObject/{image_id}.png: unreadable ({e})")
        return None
    if values.shape != (size[1], size[0]):
        problems.append(
            f"SegmentationObject/{image_id}.png is {values.shape[1]}x{values.shape[0]} but its "
            f"image is {size[0]}x{size[1]} (width x height)"
        )
        return None
    return values


def _object_rle(values: np.ndarray, index: int) -> dict:
    rle = mask_utils.encode(np.asfortranarray((values == index).astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}


def read_voc(
    root: Path, split: str, classes: list[str] | None = None, image_sets: str = "Main"
) -> FormatRead:
    """Reads the ``split`` of a VOC dataset; classes are ``classes`` when given, else the
    sorted set of object names in the split's XML files."""
    root = Path(root)
    image_dir = root / "JPEGImages"
    images, problems = [], []
    for image_id in split_ids(root, split, image_sets):
        xml = f"Annotations/{image_id}.xml"
        try:
            tree = ET.parse(root / xml).getroot()
        except FileNotFoundError:
            problems.append(f"{xml}: missing (listed in ImageSets/Main/{split}.txt)")
            continue
        except ET.ParseError as e:
            problems.append(f"{xml}: not XML ({e})")
            continue
        file_name = (tree.findtext("filename") or f"{image_id}.jpg").strip()
        try:
            size = read_header(image_dir / file_name).oriented_size
        except FileNotFoundError:
            problems.append(f"{xml}: names a missing image JPEGImages/{file_name}")
            continue
        except UnreadableImage as e:
            problems.append(f"{xml}: unreadable image JPEGImages/{file_name} ({e})")
            continue
        masks = _instance_masks(root, image_id, size, problems)
        images.append((xml, file_name, size, _objects(xml, tree, problems), masks))
    names = classes if classes is not None else sorted({o[0] for im in images for o in im[3]})
    if not names:
        raise DatasetError(f"{root}: no object in the '{split}' split names a class")
    index = {n: i for i, n in enumerate(names)}
    coco = new_coco(list(names))
    for xml, file_name, (w, h), objects, masks in images:
        image_id = add_image(coco, file_name, w, h)
        for name, (xmin, ymin, xmax, ymax), flags in objects:
            if name not in index:
                problems.append(f"{xml}: class {name!r} is not in the classes {list(names)}")
                continue
            xywh = [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]
            extra = {k: v for k, v in flags.items() if k != "_index"}
            if masks is not None:
                extra["segmentation"] = _object_rle(masks, flags["_index"])
            add_box(coco, image_id, index[name], xywh, **extra)
    return FormatRead(coco, image_dir, problems)
