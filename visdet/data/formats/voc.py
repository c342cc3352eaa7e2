"""Pascal VOC: ``Annotations/<id>.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt`` (one
image id a line).

Pixel convention: VOC corners are 1-based inclusive pixel indices, so a box covering the
whole W x H image is ``xmin=1, xmax=W``. As Detectron2's ``load_voc_instances`` does, they
become ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` (width ``xmax - xmin + 1``).
``difficult`` objects are kept as ordinary boxes (iscrowd 0, trained on and evaluated) with
``"difficult": 1``; ``truncated`` is kept the same way. Image sizes come from the image files,
not from the XML's ``<size>``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from visdet.data.coco_checks import DatasetError
from visdet.data.formats.format_read import FormatRead, add_box, add_image, new_coco
from visdet.data.image_decode import UnreadableImage, read_header

CORNERS = ("xmin", "ymin", "xmax", "ymax")


def split_ids(root: Path, split: str) -> list[str]:
    """The image ids listed in ``ImageSets/Main/<split>.txt``."""
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"VOC split file not found: {path}")
    return [
        line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _flag(obj: ET.Element, tag: str) -> int:
    text = obj.findtext(tag)
    return int(float(text)) if text and text.strip() else 0


def _objects(xml: str, tree: ET.Element, problems: list[str]) -> list[tuple[str, list, dict]]:
    """(name, [xmin, ymin, xmax, ymax], flags) of every well-formed object."""
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
        out.append((name, corners, flags))
    return out


def read_voc(root: Path, split: str, classes: list[str] | None = None) -> FormatRead:
    """Reads the ``split`` of a VOC dataset; classes are ``classes`` when given, else the
    sorted set of object names in the split's XML files."""
    root = Path(root)
    image_dir = root / "JPEGImages"
    images, problems = [], []
    for image_id in split_ids(root, split):
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
        images.append((xml, file_name, size, _objects(xml, tree, problems)))
    names = classes if classes is not None else sorted({o[0] for im in images for o in im[3]})
    if not names:
        raise DatasetError(f"{root}: no object in the '{split}' split names a class")
    index = {n: i for i, n in enumerate(names)}
    coco = new_coco(list(names))
    for xml, file_name, (w, h), objects in images:
        image_id = add_image(coco, file_name, w, h)
        for name, (xmin, ymin, xmax, ymax), flags in objects:
            if name not in index:
                problems.append(f"{xml}: class {name!r} is not in the classes {list(names)}")
                continue
            xywh = [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]
            add_box(coco, image_id, index[name], xywh, **flags)
    return FormatRead(coco, image_dir, problems)
