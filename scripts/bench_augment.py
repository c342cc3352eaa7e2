"""Time the training augmentation of each ``aug`` preset on the CPU (images/s), beside the bare
resize, on generated batches.

    .venv/bin/python scripts/bench_augment.py [--size 512] [--batch 8] [--batches 20]

Each preset is composed from conf/aug (with ``aug.train_sizes=[size]``) and run on the same
seeded batches of ``--batch`` random 480x640 images with 10 boxes each; the buffer of mosaic
and mixup is filled by a warm-up batch first. Prints a table: median ms per batch, images/s,
and the ratio to the bare resize. No assertions: numbers for the docs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from visdet.data import DetectionAugment

CONF = Path(__file__).resolve().parents[1] / "conf"
PRESETS = ("default", "strong", "mosaic", "lsj")


def make_batch(batch: int, gen: torch.Generator) -> tuple[list, list]:
    images, targets = [], []
    for _ in range(batch):
        xy = torch.rand(10, 2, generator=gen) * torch.tensor([540.0, 380.0])
        wh = torch.rand(10, 2, generator=gen) * 90 + 10
        boxes = torch.cat([xy, xy + wh], 1)
        images.append(torch.rand(3, 480, 640, generator=gen))
        targets.append({"boxes": boxes, "labels": torch.randint(1, 5, (10,), generator=gen)})
    return images, targets


def time_augment(aug: DetectionAugment, batches: list, repeats: int) -> float:
    aug(*batches[0], train=True, step=0)  # warm-up; fills the sample buffer
    times = []
    for step in range(repeats):
        images, targets = batches[step % len(batches)]
        start = time.perf_counter()
        aug(images, [dict(t) for t in targets], train=True, step=step)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    batches = [make_batch(args.batch, gen) for _ in range(4)]
    bare = DetectionAugment(train_sizes=(args.size,), hflip=0.0, color_jitter=None)
    rows = [("resize only", time_augment(bare, batches, args.batches))]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for preset in PRESETS:
            cfg = compose("train", overrides=[f"aug={preset}", f"aug.train_sizes=[{args.size}]"])
            aug = instantiate(cfg.aug)
            aug.set_epoch(0, 1000)
            rows.append((f"aug={preset}", time_augment(aug, batches, args.batches)))
    print(
        f"training augmentation, batch {args.batch} of 480x640 -> short side {args.size}, CPU, "
        f"{torch.get_num_threads()} threads, median of {args.batches} batches"
    )
    print(f"{'':<14}{'ms/batch':>10}{'images/s':>10}{'x resize':>10}")
    for name, seconds in rows:
        print(
            f"{name:<14}{seconds * 1e3:>10.1f}{args.batch / seconds:>10.1f}"
            f"{seconds / rows[0][1]:>10.2f}"
        )


if __name__ == "__main__":
    main()
