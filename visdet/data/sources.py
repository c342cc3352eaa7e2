"""Where a datamodule's COCO-format splits come from: the built-in shapes generator, a COCO,
YOLO or VOC dataset on disk, or whichever of those a folder holds (AutoSource). All give the
same thing: (COCO annotation file, image folder) per split; YOLO and VOC datasets are
converted once into COCO JSON files in a cache folder (visdet.data.formats)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from visdet.data.coco_checks import DatasetError
from visdet.data.formats import FormatRead, read_voc, read_yolo
from visdet.data.formats.format_read import relabel
from visdet.data.formats.yolo import label_path, load_data_yaml, split_folder
from visdet.data.remote import (
    FetchedFile,
    RemoteCache,
    RemoteDataError,
    RemoteFolder,
    check_protocol,
    is_url,
    join_url,
    local_or_url,
    open_file,
    open_folder,
)
from visdet.data.shapes import CLASSES, ShapesSettings, ensure_shapes_dataset
from visdet.io.atomic_write import write_text_atomic
from visdet.io.strict_json import read_json_file

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "visdet" / "converted"


@dataclass(frozen=True)
class Split:
    """A split's annotation file and image folder: local ``Path``s, or for a dataset at a
    URL the fetched annotation file (``FetchedFile``, opens as its local copy) and the
    image folder (``RemoteFolder``, fetching each image on first read)."""

    ann_file: Path | FetchedFile
    image_dir: Path | RemoteFolder


class ShapesSource:
    """The built-in synthetic dataset, generated on first use into ``cache_dir``."""

    def __init__(
        self,
        cache_dir: str,
        num_train: int = 600,
        num_val: int = 150,
        image_size: int = 128,
        max_objects: int = 4,
        min_object_size: int = 14,
        max_object_size: int = 56,
        empty_fraction: float = 0.05,
        seed: int = 0,
    ) -> None:
        if num_train < 1 or num_val < 1:
            raise ValueError(
                f"data.source: num_train and num_val must be >= 1, got {num_train}, {num_val}"
            )
        if not 8 <= min_object_size <= max_object_size < image_size:
            raise ValueError(
                "data.source: need 8 <= min_object_size <= max_object_size < "
                f"image_size, got {min_object_size}, {max_object_size}, {image_size}"
            )
        self.cache_dir = cache_dir
        self.settings = ShapesSettings(
            num_train,
            num_val,
            image_size,
            max_objects,
            min_object_size,
            max_object_size,
            empty_fraction,
            seed,
        )
        self.num_classes = len(CLASSES)

    def prepare(self) -> None:
        ensure_shapes_dataset(self.cache_dir, self.settings)

    def splits(self) -> dict[str, Split]:
        root = ensure_shapes_dataset(self.cache_dir, self.settings)
        return {s: Split(root / f"instances_{s}.json", root / s) for s in ("train", "val")}


class CocoSource:
    """A COCO-format dataset: ``root`` joined with each relative path. ``root`` and the
    paths may be fsspec URLs (``s3://``, ``gs://``, ``https://``, ``memory://``, ...,
    visdet.data.remote): annotation files are then fetched once into ``cache_dir`` and
    images one by one on first read; plain paths and ``file://`` are read in place.
    ``cache_dir``: None means ``$VISDET_REMOTE_CACHE`` or ``~/.cache/visdet/remote`` (the
    configs set ``${paths.data_dir}/remote``)."""

    def __init__(
        self,
        root: str,
        train_ann: str = "annotations/instances_train2017.json",
        train_images: str = "train2017",
        val_ann: str = "annotations/instances_val2017.json",
        val_images: str = "val2017",
        cache_dir: str | None = None,
    ) -> None:
        self.root = local_or_url(root)
        self.paths = {"train": (train_ann, train_images), "val": (val_ann, val_images)}
        self.cache = RemoteCache(cache_dir)

    def _location(self, relative: str) -> Path | str:
        if is_url(relative):
            return relative
        if isinstance(self.root, str):
            return join_url(self.root, relative)
        return self.root / local_or_url(relative)

    def prepare(self) -> None:
        """Checks the folder (local) or the URLs' protocols, and fetches remote annotation
        files into the cache (once; later calls reuse them)."""
        if isinstance(self.root, str):
            check_protocol(self.root, "data.source.root")
        elif not self.root.is_dir():
            raise FileNotFoundError(f"data.source.root: dataset folder not found: {self.root}")
        for split, (ann, images) in self.paths.items():
            for key, path in ((f"{split}_ann", ann), (f"{split}_images", images)):
                if is_url(path):
                    check_protocol(path, f"data.source.{key}")
            if is_url(self._location(ann)):
                self.cache.fetch(self._location(ann), f"annotation file of the {split} split")

    def splits(self) -> dict[str, Split]:
        self.prepare()
        return {s: self._split(s, a, i) for s, (a, i) in self.paths.items()}

    def _split(self, split: str, ann: str, images: str) -> Split:
        return Split(
            open_file(self._location(ann), self.cache, f"annotation file of the {split} split"),
            open_folder(self._location(images), self.cache, f"image of the {split} split"),
        )


def _local_root(root: str, key: str, group: str) -> Path:
    """``root`` as a local folder; RemoteDataError for a URL (only data=coco reads URLs)."""
    if is_url(root):
        raise RemoteDataError(
            f"{key} {root}: {group} datasets are read from a local folder; datasets at URLs "
            "are read in COCO format (data=coco data.source.root=URL)"
        )
    return local_or_url(root)


def inputs_key(kind: str, paths: list[Path]) -> str:
    """A hash of ``kind`` and the path, size and mtime of every file in ``paths`` (folders:
    every file under them): the name of a conversion's cache folder."""
    h = hashlib.sha256(kind.encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class ConvertedSource:
    """A dataset in another layout, converted once into COCO JSON files under ``cache_dir``
    (one folder per hash of the inputs). Subclasses give ``kind``, ``what`` (a name for
    messages), ``_inputs()``, ``_image_dir(split)`` and ``_read() -> {split: FormatRead}``.
    ``num_classes`` and ``class_names`` are set by ``prepare()``."""

    kind = ""
    what = ""
    settings = ""  # reader arguments that change the result, part of the cache key

    def __init__(self, cache_dir: str | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
        self.num_classes: int | None = None
        self.class_names: list[str] | None = None
        self._splits: dict[str, Split] | None = None

    def _inputs(self) -> list[Path]:
        raise NotImplementedError

    def _image_dir(self, split: str) -> Path:
        raise NotImplementedError

    def _read(self) -> dict[str, FormatRead]:
        raise NotImplementedError

    def prepare(self) -> None:
        folder = (
            self.cache_dir / f"{self.kind}-{inputs_key(self.kind + self.settings, self._inputs())}"
        )
        files = {s: folder / f"instances_{s}.json" for s in SPLITS}
        if not all(f.is_file() for f in files.values()):
            reads = self._read()
            for split, read in reads.items():
                read.raise_problems(f"{self.what} ({split} split)")
            for split, read in reads.items():
                write_text_atomic(files[split], json.dumps(read.coco))
            log.info("converted %s into COCO files in %s", self.what, folder)
        categories = read_json_file(files["train"], "converted annotation file")["categories"]
        self.class_names = [c["name"] for c in categories]
        self.num_classes = len(self.class_names)
        self._splits = {s: Split(files[s], self._image_dir(s)) for s in SPLITS}

    def splits(self) -> dict[str, Split]:
        if self._splits is None:
            self.prepare()
        return self._splits


class YoloSource(ConvertedSource):
    """An Ultralytics YOLO dataset: ``data_yaml`` with ``names`` and ``train``/``val``
    image folders (visdet.data.formats.yolo)."""

    kind = "yolo"

    def __init__(self, data_yaml: str, cache_dir: str | None = None) -> None:
        super().__init__(cache_dir)
        self.data_yaml = _local_root(data_yaml, "data.source.data_yaml", "YOLO")
        self.what = f"YOLO dataset {self.data_yaml}"

    def _inputs(self) -> list[Path]:
        folders = [split_folder(self.data_yaml, s) for s in SPLITS]
        labels = [label_path(f / "x").parent for f in folders]
        return [self.data_yaml, *folders, *[f for f in labels if f.is_dir()]]

    def _image_dir(self, split: str) -> Path:
        return split_folder(self.data_yaml, split)

    def _read(self) -> dict[str, FormatRead]:
        return {s: read_yolo(self.data_yaml, s) for s in SPLITS}


class VocSource(ConvertedSource):
    """A Pascal VOC dataset under ``root`` (visdet.data.formats.voc). Classes: ``classes``
    when given, else the sorted set of object names in both splits; ``image_sets``: the
    ``ImageSets`` folder of the split lists (``Segmentation``: the images with instance
    masks)."""

    kind = "voc"

    def __init__(
        self,
        root: str,
        train_split: str = "train",
        val_split: str = "val",
        classes: list[str] | None = None,
        cache_dir: str | None = None,
        image_sets: str = "Main",
    ) -> None:
        super().__init__(cache_dir)
        self.root = _local_root(root, "data.source.root", "Pascal VOC")
        self.names = {"train": train_split, "val": val_split}
        self.classes = list(classes) if classes is not None else None
        self.image_sets = image_sets
        self.what = f"VOC dataset {self.root}"
        self.settings = json.dumps([self.names, self.classes, self.image_sets])

    def _inputs(self) -> list[Path]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"data.source.root: dataset folder not found: {self.root}")
        sets = [self.root / "ImageSets" / self.image_sets / f"{n}.txt"
                for n in self.names.values()]  # fmt: skip
        paths = [*sets, self.root / "Annotations", self.root / "JPEGImages",
                 self.root / "SegmentationObject"]  # fmt: skip
        return [p for p in paths if p.exists()]

    def _image_dir(self, split: str) -> Path:
        return self.root / "JPEGImages"

    def _read(self) -> dict[str, FormatRead]:
        reads = {s: read_voc(self.root, n, self.classes, self.image_sets)
                 for s, n in self.names.items()}  # fmt: skip
        if self.classes is None:
            names = sorted({c["name"] for r in reads.values() for c in r.coco["categories"]})
            reads = {s: relabel(r, names) for s, r in reads.items()}
        return reads


def _coco_split(root: Path, split: str) -> tuple[str, str] | None:
    """(annotation file, image folder) relative to ``root`` for a COCO ``split``: the one
    JSON in ``annotations/`` (or ``root``) whose name contains ``split``, and the folder
    whose name contains it (else ``images/``); None when not found."""
    jsons = [p for d in (root / "annotations", root) if d.is_dir() for p in d.glob("*.json")]
    named = [p for p in jsons if split in p.stem]
    folders = [p for p in root.iterdir() if p.is_dir() and split in p.name]
    folder = folders[0] if len(folders) == 1 else root / "images"
    if len(named) != 1 or not folder.is_dir():
        return None
    return str(named[0].relative_to(root)), str(folder.relative_to(root))


def _yolo_yaml(root: Path) -> Path | None:
    """``data.yaml``, else the one ``*.yaml`` in ``root`` that has ``names``."""
    candidates = [root / "data.yaml"] + sorted(root.glob("*.yaml"))
    for path in candidates:
        if path.is_file():
            try:
                load_data_yaml(path)
            except DatasetError:
                continue
            return path
    return None


def detect_source(root: Path, cache_dir: str | None = None):
    """The source for the dataset in ``root`` (COCO, then YOLO, then VOC), with a line
    saying what was found; DatasetError naming the folder when none is recognised."""
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: dataset folder not found: {root}")
    coco = [_coco_split(root, s) for s in SPLITS]
    if all(coco):
        (ta, ti), (va, vi) = coco
        log.info(
            "data.root %s: COCO dataset (train: %s + %s/, val: %s + %s/)", root, ta, ti, va, vi
        )
        return CocoSource(str(root), ta, ti, va, vi)
    data_yaml = _yolo_yaml(root)
    if data_yaml is not None:
        log.info("data.root %s: YOLO dataset (%s)", root, data_yaml.name)
        return YoloSource(str(data_yaml), cache_dir)
    if (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir():
        log.info("data.root %s: Pascal VOC dataset (Annotations/, JPEGImages/)", root)
        return VocSource(str(root), cache_dir=cache_dir)
    raise DatasetError(
        f"data.root {root}: no recognisable dataset: looked for COCO (a train and a val "
        "*.json in annotations/ or the folder, and their image folders), YOLO (data.yaml or "
        "a *.yaml with 'names') and VOC (Annotations/ and JPEGImages/)"
    )


class AutoSource:
    """Whichever of a COCO, YOLO or VOC dataset ``root`` holds (``detect_source``)."""

    def __init__(self, root: str, cache_dir: str | None = None) -> None:
        self.root = _local_root(root, "data.root", "auto-detected")
        self.cache_dir = cache_dir
        self.source = None

    def _found(self):
        if self.source is None:
            self.source = detect_source(self.root, self.cache_dir)
        return self.source

    @property
    def num_classes(self) -> int | None:
        return getattr(self._found(), "num_classes", None)

    @property
    def class_names(self) -> list[str] | None:
        return getattr(self._found(), "class_names", None)

    def prepare(self) -> None:
        self._found().prepare()

    def splits(self) -> dict[str, Split]:
        return self._found().splits()
