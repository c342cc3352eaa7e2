"""Time the training augmentation of each ``aug`` preset on the CPU (images/s), beside the bare
resize, on generated batches.

    .venv/bin/python scripts/bench_augment.py [--size 512] [--batch 8] [--batches 20]

Each single op (on top of the resize) and each preset (composed from conf/aug with
``aug.train_sizes=[size]``) runs on the same seeded batches of ``--batch`` random 480x640
images with 10 boxes each, after 3 warm-up batches (which also fill the buffer of mosaic and
mixup), round robin (one batch of each row per round, so the machine's drift hits every row
alike). Prints a table: median ms per batch, images/s, and the ratio to the bare resize.
No assertions: numbers for the docs.
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
# one op on top of the resize
SINGLE_OPS = (
    ("+ hflip", {"hflip": 1.0}),
    ("+ color_jitter", {"color_jitter": (0.2, 0.2, 0.2, 0.02), "color_jitter_p": 1.0}),
    ("+ photometric", {"photometric": {"p": 1.0}}),
    ("+ affine", {"affine": {"degrees": 0.0, "translate": [0.1, 0.1], "scale": [0.5, 1.5]}}),
    ("+ resized crop", {"random_resized_crop": {"p": 1.0}}),
    ("+ mosaic", {"mosaic": {"p": 1.0}}),
    ("+ mixup", {"mixup": {"p": 1.0}}),
)


def make_batch(batch: int, gen: torch.Generator) -> tuple[list, list]:
    images, targets = [], []
    for _ in range(batch):
        xy = torch.rand(10, 2, generator=gen) * torch.tensor([540.0, 380.0])
        wh = torch.rand(10, 2, generator=gen) * 90 + 10
        boxes = torch.cat([xy, xy + wh], 1)
        images.append(torch.rand(3, 480, 640, generator=gen))
        targets.append({"boxes": boxes, "labels": torch.randint(1, 5, (10,), generator=gen)})
    return images, targets


def run_once(aug: DetectionAugment, batches: list, step: int) -> float:
    images, targets = batches[step % len(batches)]
    start = time.perf_counter()
    aug(images, [dict(t) for t in targets], train=True, step=step)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    batches = [make_batch(args.batch, gen) for _ in range(4)]
    base = {"train_sizes": (args.size,), "hflip": 0.0, "color_jitter": None}
    augs = {"resize only": DetectionAugment(**base)}
    for name, extra in SINGLE_OPS:
        augs[name] = DetectionAugment(**{**base, **extra})
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for preset in PRESETS:
            cfg = compose("train", overrides=[f"aug={preset}", f"aug.train_sizes=[{args.size}]"])
            augs[f"aug={preset}"] = instantiate(cfg.aug)
            augs[f"aug={preset}"].set_epoch(0, 1000)
    for aug in augs.values():
        for step in range(3):  # warm-up; fills the buffer of mosaic and mixup
            run_once(aug, batches, step)
    times = {name: [] for name in augs}
    for step in range(args.batches):  # round robin: drift of the machine hits every row alike
        for name, aug in augs.items():
            times[name].append(run_once(aug, batches, step))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"training augmentation, batch {args.batch} of 480x640 -> short side {args.size}, CPU, "
        f"{torch.get_num_threads()} threads, median of {args.batches} rounds"
    )
    print(f"{'':<18}{'ms/batch':>10}{'images/s':>10}{'x resize':>10}")
    for name, seconds in medians.items():
        print(
            f"{name:<18}{seconds * 1e3:>10.1f}{args.batch / seconds:>10.1f}"
            f"{seconds / medians['resize only']:>10.2f}"
        )


if __name__ == "__main__":
    main()
