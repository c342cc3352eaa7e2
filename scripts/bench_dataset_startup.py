"""Start-up time of a large COCO split with and without the index cache, and DataLoader speed.

Generates (seeded, in a temporary folder) a COCO file of ``--images`` tiny 64x48 PNG images
(one template written per file) with about 5 boxes each, then measures: the first start-up
(``CocoDetection`` with an empty cache), the second (cache hit), and images/s delivered by a
DataLoader (batch 8, ``collate_detection``) over ``--items`` items with 0 and 2 workers.

    .venv/bin/python scripts/bench_dataset_startup.py [--images 20000] [--items 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import tempfile
import time
from pathlib import Path

from PIL import Image
from pycocotools.coco import COCO
from torch.utils.data import DataLoader, Subset

from visdet.data.coco import CocoDetection
from visdet.data.coco_checks import DatasetError, check_coco
from visdet.data.datamodule import collate_detection
from visdet.data.image_decode import read_header
from visdet.data.index_cache import cache_key
from visdet.io.strict_json import read_json_file

WIDTH, HEIGHT = 64, 48


def make_dataset(root: Path, num_images: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``root/images/*.png`` and ``root/ann.json``; returns (ann_file, image_dir)."""
    rng = random.Random(seed)
    image_dir = root / "images"
    image_dir.mkdir(parents=True)
    buffer = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (90, 120, 150)).save(buffer, format="PNG")
    png = buffer.getvalue()
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        name = f"{image_id:06d}.png"
        (image_dir / name).write_bytes(png)
        images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
        for _ in range(rng.randint(3, 7)):
            w, h = rng.uniform(4, 30), rng.uniform(4, 20)
            x, y = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": rng.randint(1, 10),
                    "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, 11)]
    ann_file = root / "ann.json"
    ann_file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return ann_file, image_dir


def time_phases(ann_file: Path, image_dir: Path) -> list[tuple[str, float]]:
    """Seconds of each step of an uncached start-up, and of the cache key."""
    times = []
    start = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal start
        times.append((name, time.perf_counter() - start))
        start = time.perf_counter()

    data = read_json_file(ann_file, "annotation file", DatasetError)
    lap("json load")
    data = check_coco(data, ann_file)
    lap("check_coco")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    lap("createIndex")
    names = [coco.imgs[i]["file_name"] for i in sorted(coco.getImgIds())]
    for name in names:
        read_header(image_dir / name)
    lap("header scan")
    dataset = CocoDetection(ann_file, image_dir, cache_dir=None)
    start = time.perf_counter()
    for image_id in dataset.image_ids:
        dataset._target(image_id)
    lap("targets")
    cache_key(ann_file, image_dir, names, dataset.max_image_pixels)
    lap("cache key (sha256 + stat)")
    return times


def time_startup(ann_file: Path, image_dir: Path, cache_dir: Path | None) -> float:
    start = time.perf_counter()
    CocoDetection(ann_file, image_dir, cache_dir=cache_dir)
    return time.perf_counter() - start


def images_per_second(dataset: CocoDetection, items: int, workers: int) -> float:
    loader = DataLoader(
        Subset(dataset, range(min(items, len(dataset)))),
        batch_size=8,
        num_workers=workers,
        collate_fn=collate_detection,
    )
    start = time.perf_counter()
    count = sum(len(batch["targets"]) for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--items", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        ann_file, image_dir = make_dataset(root / "data", args.images)
        made = time.perf_counter() - start
        cache = root / "cache"
        phases = time_phases(ann_file, image_dir)
        no_cache = time_startup(ann_file, image_dir, None)
        first = time_startup(ann_file, image_dir, cache)
        second = time_startup(ann_file, image_dir, cache)
        dataset = CocoDetection(ann_file, image_dir, cache_dir=cache)
        rows = [
            ("generate dataset", f"{made:.2f} s"),
            *((f"  step: {name}", f"{t:.2f} s") for name, t in phases),
            ("start-up, cache off", f"{no_cache:.2f} s"),
            ("first start-up (builds the cache)", f"{first:.2f} s"),
            ("second start-up (cache hit)", f"{second:.2f} s"),
        ]
        for workers in (0, 2):
            rate = images_per_second(dataset, args.items, workers)
            rows.append((f"DataLoader, {workers} workers, batch 8", f"{rate:.0f} images/s"))
    print(f"{args.images} images of {WIDTH}x{HEIGHT}, {args.items} items through the loader")
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
