"""The Ultralytics YOLO layout: a ``data.yaml`` with ``names`` (a list, or ``{index: name}``),
an optional ``path`` (the dataset root; relative paths are relative to the yaml's folder) and
``train`` / ``val`` folders of images relative to that root. Each image's labels are in the
sibling ``labels`` folder (``.../images/.../x.jpg`` -> ``.../labels/.../x.txt``), one object a
line: ``class cx cy w h`` (a box) or, as YOLO-seg writes them, ``class x1 y1 x2 y2 ... xn yn``
(a polygon of n >= 3 points), normalised to [0, 1]. An image without a label file has no
boxes.

Boxes become COCO pixels ``x = (cx - w/2) * W`` etc., clipped to the image (a box whose
centre and sides are in [0, 1] can still reach past the border by up to half its size). A
polygon becomes the object's ``segmentation`` (in pixels), its box the polygon's bounds and
its area the polygon's (the shoelace formula), as COCO's polygon annotations have."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from visdet.data.coco_checks import DatasetError
from visdet.data.formats.format_read import FormatRead, add_box, add_image, image_files, new_coco
from visdet.data.image_decode import UnreadableImage, read_header


def load_data_yaml(data_yaml: Path) -> tuple[DictConfig, list[str]]:
    """The parsed ``data.yaml`` and its class names in index order."""
    if not data_yaml.is_file():
        raise FileNotFoundError(f"data.source.data_yaml: file not found: {data_yaml}")
    try:
        cfg = OmegaConf.load(data_yaml)
    except Exception as e:  # a YAML syntax error: named, with the parser's message
        raise DatasetError(f"{data_yaml} is not valid YAML: {e}") from None
    if not isinstance(cfg, DictConfig) or "names" not in cfg:
        raise DatasetError(f"{data_yaml} has no 'names' (the list of class names)")
    names = cfg.names
    if isinstance(names, ListConfig):
        out = [str(n) for n in names]
    elif isinstance(names, DictConfig):
        keys = sorted(int(k) for k in names)
        if keys != list(range(len(keys))):
            raise DatasetError(f"{data_yaml}: 'names' keys must be 0..K-1, got {keys}")
        out = [str(names[k]) for k in keys]
    else:
        raise DatasetError(f"{data_yaml}: 'names' must be a list or a mapping, got {names!r}")
    if not out:
        raise DatasetError(f"{data_yaml}: 'names' is empty")
    return cfg, out


def split_folder(data_yaml: Path, split: str) -> Path:
    """The image folder of ``split`` named in ``data_yaml``."""
    cfg, _ = load_data_yaml(data_yaml)
    root = data_yaml.parent / str(cfg.get("path") or ".")
    if split not in cfg or not isinstance(cfg[split], str):
        raise DatasetError(f"{data_yaml}: '{split}' must name a folder of images")
    folder = root / cfg[split]
    if not folder.is_dir():
        raise FileNotFoundError(f"{data_yaml}: the '{split}' image folder is missing: {folder}")
    return folder


def label_path(image: Path) -> Path:
    """``.../images/.../x.jpg`` -> ``.../labels/.../x.txt`` (the last ``images`` part)."""
    a, b = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(b.join(str(image).rsplit(a, 1))).with_suffix(".txt")


def _parse_line(line: str, num_classes: int, names: str) -> tuple[int, list[float]] | str:
    """(class index, [cx, cy, w, h] or a polygon's [x1, y1, ..., xn, yn]) or the problem with
    the line."""
    fields = line.split()
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        return (
            f"expected 'class cx cy w h' (5 fields) or a polygon 'class x1 y1 ... xn yn' "
            f"(3 or more points: an odd number of 7 or more fields), got {len(fields)} fields"
        )
    try:
        cls_f = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return f"not numbers: {line.strip()!r}"
    if cls_f != int(cls_f) or not 0 <= cls_f < num_classes:
        return f"class {fields[0]} but {names} names {num_classes} classes"
    if not all(0.0 <= v <= 1.0 for v in values):
        return f"coordinates outside [0, 1]: {' '.join(fields[1:])}"
    return int(cls_f), values


def add_polygon(coco: dict, image_id: int, label: int, normalised: list[float], width: int,
                height: int) -> None:  # fmt: skip
    """An object given as a normalised polygon: its pixels' polygon as ``segmentation``, its
    bounds as ``bbox`` and its shoelace area as ``area``."""
    xs = [v * width for v in normalised[0::2]]
    ys = [v * height for v in normalised[1::2]]
    area = abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2
    box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    polygon = [v for xy in zip(xs, ys, strict=True) for v in xy]
    add_box(coco, image_id, label, box, area=area, segmentation=[polygon])


def read_yolo(data_yaml: Path, split: str) -> FormatRead:
    """Reads the ``split`` images and labels of a YOLO dataset; see the module docstring."""
    data_yaml = Path(data_yaml)
    _, class_names = load_data_yaml(data_yaml)
    folder = split_folder(data_yaml, split)
    top = data_yaml.parent
    coco, problems = new_coco(class_names), []

    def shown(p: Path) -> str:
        return os.path.relpath(p, top) if p.is_relative_to(top) else str(p)

    for image in image_files(folder):
        try:
            width, height = read_header(image).oriented_size
        except UnreadableImage as e:
            problems.append(f"{shown(image)}: unreadable image ({e})")
            continue
        image_id = add_image(coco, image.relative_to(folder).as_posix(), width, height)
        labels = label_path(image)
        if not labels.is_file():
            continue  # a negative image
        try:
            text = labels.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"{shown(labels)}: unreadable label file ({e})")
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parsed = _parse_line(line, len(class_names), data_yaml.name)
            if isinstance(parsed, str):
                problems.append(f"{shown(labels)} line {number}: {parsed}")
                continue
            label, values = parsed
            if len(values) > 4:
                add_polygon(coco, image_id, label, values, width, height)
                continue
            cx, cy, w, h = values
            x1, y1 = max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height)
            x2, y2 = min(width, (cx + w / 2) * width), min(height, (cy + h / 2) * height)
            add_box(coco, image_id, label, [x1, y1, x2 - x1, y2 - y1])
    return FormatRead(coco, folder, problems)
