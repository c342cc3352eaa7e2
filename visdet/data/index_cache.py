"""A cache of what ``CocoDetection`` works out at start-up, so that a large split starts fast.

Start-up of a 20k-image split is dominated by the header scan (every image opened) and the
per-image targets; both depend only on the annotation file, the image files and the pixel
limit. They are stored as one JSON file per (annotation file, image folder) under the cache
folder, with a key: sha256 of the annotation file's bytes, the image folder, the pixel limit
and every image's ``file_name``, size and mtime (a stat is cheap, a header is not). An entry
whose key differs (a changed annotation file, a touched image) is stale; one that cannot be
parsed is corrupt; either is logged once and rebuilt. Written atomically; read as JSON only.

Cache folder: ``cache_dir`` if given; ``"auto"`` means ``$VISDET_CACHE`` or
``~/.cache/visdet/index``, used only for splits of ``AUTO_MIN_IMAGES`` images or more (smaller
ones scan in under a second); ``None`` or ``"off"`` (also as ``VISDET_CACHE=off``) disables.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from visdet.io.atomic_write import write_text_atomic

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when what CocoDetection computes at start-up changes
ENV_VAR = "VISDET_CACHE"
AUTO_MIN_IMAGES = 1000
DROP_KINDS = ("zero", "subpixel", "outside", "no_mask", "polygons")
BOX_DROP_KINDS = ("zero", "subpixel", "outside", "no_mask")  # those that drop an object

__all__ = ["StartupIndex", "cache_key", "entry_path", "load_index", "resolve_cache_dir"]


@dataclass
class StartupIndex:
    """What the start-up scan found, in ``image_ids`` order.

    ``apply_orientation`` [N] bools; ``unreadable`` index -> why; ``raw`` file names used
    unrotated; ``targets`` dicts with ``boxes`` float32 [M, 4] xyxy, ``labels`` int64 [M],
    ``image_id``, ``orig_size`` (H, W); ``dropped`` degenerate boxes left out, per kind.
    """

    apply_orientation: list[bool]
    unreadable: dict[int, str]
    raw: list[str]
    targets: list[dict]
    dropped: dict[str, int]


def resolve_cache_dir(cache_dir: str | os.PathLike | None, num_images: int) -> Path | None:
    """The cache folder to use, or None for no cache (see the module docstring)."""
    if cache_dir is None or cache_dir == "off":
        return None
    if not isinstance(cache_dir, str | os.PathLike):
        raise TypeError(f"cache_dir must be a path, 'auto', 'off' or None, got {cache_dir!r}")
    if cache_dir != "auto":
        return Path(cache_dir)
    env = os.environ.get(ENV_VAR, "")
    if env == "off" or num_images < AUTO_MIN_IMAGES:
        return None
    return Path(env) if env else Path.home() / ".cache" / "visdet" / "index"


def entry_path(cache_dir: Path, ann_file: Path, image_dir: Path, masks: bool = False) -> Path:
    """The cache file of one (annotation file, image folder) pair, with or without instance
    masks (their checks drop objects without mask pixels)."""
    name = f"{ann_file.resolve()}\0{image_dir.resolve()}" + ("\0masks" if masks else "")
    return cache_dir / f"{hashlib.sha256(name.encode()).hexdigest()[:24]}.json"


def cache_key(
    ann_file: Path,
    image_dir: Path,
    file_names: list[str],
    max_pixels: int | None,
    masks: bool = False,
) -> str | None:
    """The key of the current inputs; None when an image cannot be stat'ed (the scan then
    reports it)."""
    head = f"v{CACHE_VERSION}\0{image_dir.resolve()}\0{max_pixels}\0{masks}\0"
    digest = hashlib.sha256(head.encode())
    digest.update(hashlib.sha256(ann_file.read_bytes()).digest())
    for name in file_names:
        try:
            st = os.stat(image_dir / name)
        except OSError:
            return None
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def load_index(
    path: Path, key: str, image_ids: list[int], sizes: list[tuple[int, int]]
) -> StartupIndex | None:
    """The cached index at ``path`` if it has ``key``; None (logged) if it is missing, stale
    or corrupt. ``sizes`` [(H, W)] per image give the targets' ``orig_size``."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("key") != key:
            log.info("index cache %s is stale (its inputs changed); rebuilding it", path)
            return None
        return _decode(data, image_ids, sizes)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as e:
        log.warning("index cache %s is corrupt (%s); rebuilding it", path, e)
        return None


def save_index(path: Path, key: str, index: StartupIndex) -> None:
    """Write ``index`` under ``key`` to ``path`` atomically."""
    targets = index.targets
    boxes = torch.cat([t["boxes"] for t in targets]) if targets else torch.zeros(0, 4)
    labels = torch.cat([t["labels"] for t in targets]) if targets else torch.zeros(0)
    data = {
        "version": CACHE_VERSION,
        "key": key,
        "unrotated": [i for i, a in enumerate(index.apply_orientation) if not a],
        "unreadable": [[i, why] for i, why in index.unreadable.items()],
        "raw": index.raw,
        "counts": [len(t["labels"]) for t in targets],
        "boxes": boxes.reshape(-1).tolist(),
        "labels": labels.tolist(),
        "dropped": index.dropped,
    }
    write_text_atomic(path, json.dumps(data, separators=(",", ":")))


def _decode(data: dict, image_ids: list[int], sizes: list[tuple[int, int]]) -> StartupIndex:
    counts = [int(c) for c in data["counts"]]
    boxes = torch.tensor(data["boxes"], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor(data["labels"], dtype=torch.int64)
    if len(counts) != len(image_ids) or sum(counts) != len(boxes) or len(labels) != len(boxes):
        raise ValueError("its counts do not match its boxes or the split's images")
    apply_orientation = [True] * len(image_ids)
    for i in data["unrotated"]:
        apply_orientation[int(i)] = False
    targets = [
        {"boxes": b.clone(), "labels": lab.clone(), "image_id": image_id, "orig_size": size}
        for b, lab, image_id, size in zip(
            boxes.split(counts), labels.split(counts), image_ids, sizes, strict=True
        )
    ]
    return StartupIndex(
        apply_orientation=apply_orientation,
        unreadable={int(i): str(why) for i, why in data["unreadable"]},
        raw=[str(n) for n in data["raw"]],
        targets=targets,
        dropped={k: int(data["dropped"][k]) for k in DROP_KINDS},
    )
