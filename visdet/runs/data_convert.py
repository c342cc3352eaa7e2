"""The run behind ``visdet data convert`` (conf/data_convert.yaml): convert a dataset between
the COCO, YOLO and Pascal VOC layouts, through the COCO dict the readers of
``visdet.data.formats`` return.

    visdet data convert src=data.yaml src_format=yolo dst=DIR dst_format=coco
    visdet data convert src=VOC_ROOT src_format=voc dst=DIR dst_format=coco [splits=[train,val]]
    visdet data convert src=GT.json src_images=DIR src_format=coco dst=DIR dst_format=yolo

Sources: ``yolo`` a ``data.yaml`` (splits: those of ``train``/``val`` it names), ``voc`` the
VOC root (splits from ``ImageSets/Main``, default train and val; the classes are the sorted
names of both), ``coco`` one annotation JSON plus ``src_images`` (one split, named by
``splits=[name]`` or after the file: ``instances_val2017.json`` -> ``val2017``).

Written into ``dst`` (which must be missing or empty):

- ``coco``: ``annotations/instances_<split>.json`` (image ids 1..N, annotation ids 1..M,
  categories 1..K with names, ``file_name`` relative to the source image folder, image sizes
  read from the image files, VOC's ``difficult``/``truncated`` kept on each annotation). The
  images are not copied: ``README.txt`` names each split's image folder, and
  ``images/<split>`` is a symlink to it where the filesystem allows.
- ``yolo``: ``data.yaml`` (``path`` the absolute ``dst``, ``train``/``val``, ``names`` in
  category-id order), ``images/<split>/`` (symlinks to the source images, copies where a
  symlink cannot be made or with ``copy_images=true``) and ``labels/<split>/<stem>.txt``:
  ``class cx cy w h`` normalised with 8 decimals (1e-8 of a 4000 px side is 4e-5 px), boxes
  clipped to the image first. Crowd annotations and boxes with no area inside the image are
  left out (counted in the printed line); an image without boxes gets an empty label file.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

from visdet.config.validate import validate_config
from visdet.data.coco_checks import check_coco
from visdet.data.formats import FormatRead, read_voc, read_yolo
from visdet.data.formats.format_read import relabel
from visdet.data.formats.yolo import load_data_yaml
from visdet.io.atomic_write import write_bytes_atomic, write_text_atomic
from visdet.io.strict_json import dumps_strict, read_json_file

TOP_LEVEL = {
    "src",
    "src_format",
    "src_images",
    "dst",
    "dst_format",
    "splits",
    "copy_images",
    "paths",
    "hydra",
    "task_name",
}
SRC_FORMATS = ("yolo", "voc", "coco")
DST_FORMATS = ("coco", "yolo")
DECIMALS = 8  # of the normalised YOLO coordinates


def run_data_convert(cfg: DictConfig) -> dict[str, Path]:
    """Convert as configured; returns ``{split: file written}`` (the annotation JSON, or the
    split's label folder) and prints one line per split."""
    validate_config(cfg, top_level=TOP_LEVEL, required=())
    src_format, dst_format = cfg.get("src_format"), cfg.get("dst_format")
    if src_format not in SRC_FORMATS:
        raise ValueError(
            f"src_format: expected one of {', '.join(SRC_FORMATS)}, got {src_format!r}"
        )
    if dst_format not in DST_FORMATS:
        raise ValueError(
            f"dst_format: expected one of {', '.join(DST_FORMATS)}, got {dst_format!r}"
        )
    if cfg.get("src") is None or cfg.get("dst") is None:
        raise ValueError("give src=PATH (the dataset) and dst=DIR (the folder to write)")
    splits = list(cfg.splits) if cfg.get("splits") is not None else None
    reads = read_source(Path(cfg.src), src_format, splits, cfg.get("src_images"))
    dst = Path(cfg.dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ValueError(f"dst: {dst} exists and is not an empty folder")
    if dst_format == "coco":
        return write_coco(reads, dst)
    return write_yolo(reads, dst, bool(cfg.get("copy_images", False)))


def read_source(
    src: Path, src_format: str, splits: list[str] | None, src_images: str | None
) -> dict[str, FormatRead]:
    """``{split: FormatRead}`` of the source, every split with the same categories; a
    DatasetError naming the problems when a reader met any."""
    if not src.exists():
        raise FileNotFoundError(f"src: not found: {src}")
    if src_format == "yolo":
        if not src.is_file():
            raise ValueError(f"src: a YOLO source is its data.yaml file, got the folder {src}")
        cfg, _ = load_data_yaml(src)
        names = splits or [s for s in ("train", "val") if s in cfg]
        reads = {s: read_yolo(src, s) for s in names}
    elif src_format == "voc":
        if not src.is_dir():
            raise ValueError(f"src: a VOC source is its root folder, got the file {src}")
        reads = {s: read_voc(src, s) for s in splits or ["train", "val"]}
        classes = sorted({c["name"] for r in reads.values() for c in r.coco["categories"]})
        reads = {s: relabel(r, classes) for s, r in reads.items()}
    else:
        reads = {_coco_split_name(src, splits): read_coco(src, src_images)}
    if not reads:
        raise ValueError(f"src: {src} names no split (expected train and/or val)")
    for split, read in reads.items():
        read.raise_problems(f"{src_format} source {src} ({split} split)")
    return reads


def _coco_split_name(src: Path, splits: list[str] | None) -> str:
    if splits is None:
        return re.sub(r"^instances_", "", src.stem)
    if len(splits) != 1:
        raise ValueError(f"splits: a COCO source is one JSON file, one split; got {splits}")
    return splits[0]


def read_coco(ann_file: Path, src_images: str | None) -> FormatRead:
    """A checked COCO annotation file (visdet.data.coco_checks) and its image folder."""
    if not ann_file.is_file():
        raise ValueError(
            f"src: a COCO source is an annotation JSON file, got the folder {ann_file}"
        )
    if src_images is None:
        raise ValueError("src_images: a COCO source needs src_images=DIR (its image folder)")
    image_dir = Path(src_images)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"src_images: image folder not found: {image_dir}")
    coco = check_coco(read_json_file(ann_file, "src annotation file"), ann_file)
    return FormatRead(coco, image_dir)


def write_coco(reads: dict[str, FormatRead], dst: Path) -> dict[str, Path]:
    """``dst/annotations/instances_<split>.json`` per split (annotation ids renumbered
    1..M), ``dst/README.txt`` naming the image folders and ``dst/images/<split>`` symlinks."""
    written, readme = {}, ["COCO annotations written by visdet data convert.", ""]
    for split, read in reads.items():
        coco = dict(read.coco)
        coco["annotations"] = [{**a, "id": i} for i, a in enumerate(coco["annotations"], 1)]
        path = dst / "annotations" / f"instances_{split}.json"
        write_text_atomic(path, dumps_strict(coco, indent=None) + "\n")
        images_root = read.image_dir.resolve()
        link = dst / "images" / split
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(images_root, target_is_directory=True)
            shown = f"{images_root} (linked as {link})"
        except OSError:
            shown = str(images_root)
        readme.append(f"{split}: annotations {path.relative_to(dst)}, images_root {images_root}")
        print(
            f"data convert: {split}: {len(coco['images'])} images, {len(coco['annotations'])} "
            f"boxes -> {path}; file_names are relative to {shown}",
            flush=True,
        )
        written[split] = path
    write_text_atomic(dst / "README.txt", "\n".join(readme) + "\n")
    return written


def yolo_lines(coco: dict, image: dict, anns: list[dict]) -> tuple[list[str], int]:
    """The label lines ``cls cx cy w h`` of ``image`` (class = index of the category id in
    sorted order) and the number of boxes left out (crowd, or no area inside the image)."""
    index = {cid: i for i, cid in enumerate(sorted(c["id"] for c in coco["categories"]))}
    width, height = image["width"], image["height"]
    lines, left_out = [], 0
    for a in anns:
        x, y, w, h = a["bbox"]
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = min(float(width), x + w), min(float(height), y + h)
        if a.get("iscrowd", 0) or x2 <= x1 or y2 <= y1:
            left_out += 1
            continue
        values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height]
        values += [(x2 - x1) / width, (y2 - y1) / height]
        lines.append(f"{index[a['category_id']]} " + " ".join(f"{v:.{DECIMALS}f}" for v in values))
    return lines, left_out


def _place_image(source: Path, target: Path, copy: bool) -> None:
    """A symlink ``target`` -> ``source`` (absolute), or a copy when ``copy`` or when the
    link cannot be made."""
    if not source.is_file():
        raise FileNotFoundError(f"image not found: {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            target.symlink_to(source.resolve())
            return
        except OSError:
            pass  # no symlinks here (e.g. some Windows or network filesystems): copy
    write_bytes_atomic(target, source.read_bytes())


def write_yolo(reads: dict[str, FormatRead], dst: Path, copy_images: bool) -> dict[str, Path]:
    """``dst/data.yaml``, ``dst/images/<split>/`` and ``dst/labels/<split>/`` per split."""
    first = next(iter(reads.values())).coco
    names = [c["name"] for c in sorted(first["categories"], key=lambda c: c["id"])]
    written = {}
    for split, read in reads.items():
        coco = read.coco
        by_image: dict = {im["id"]: [] for im in coco["images"]}
        for a in coco["annotations"]:
            by_image[a["image_id"]].append(a)
        labels_dir = dst / "labels" / split
        seen: dict[Path, str] = {}
        boxes = left_out = 0
        for image in coco["images"]:
            file_name = image["file_name"]
            label = labels_dir / Path(file_name).with_suffix(".txt")
            if label in seen:
                raise ValueError(
                    f"{split}: images {seen[label]!r} and {file_name!r} would share the label "
                    f"file {label} (YOLO pairs images and labels by stem)"
                )
            seen[label] = file_name
            _place_image(
                read.image_dir / file_name, dst / "images" / split / file_name, copy_images
            )
            lines, dropped = yolo_lines(coco, image, by_image[image["id"]])
            boxes, left_out = boxes + len(lines), left_out + dropped
            write_text_atomic(label, "".join(line + "\n" for line in lines))
        labels_dir.mkdir(parents=True, exist_ok=True)
        how = "copied" if copy_images else "linked"
        print(
            f"data convert: {split}: {len(coco['images'])} images ({how}), {boxes} boxes -> "
            f"{labels_dir}; {left_out} crowd or empty boxes left out",
            flush=True,
        )
        written[split] = labels_dir
    yaml = [f"path: {_quoted(str(dst.resolve()))}"]
    yaml += [f"{s}: images/{s}" for s in reads]
    yaml += ["names:"] + [f"  {i}: {_quoted(n)}" for i, n in enumerate(names)]
    write_text_atomic(dst / "data.yaml", "\n".join(yaml) + "\n")
    print(f"data convert: wrote {dst / 'data.yaml'} ({len(names)} classes)", flush=True)
    return written


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return dumps_strict(text, indent=None)
