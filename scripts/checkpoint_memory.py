"""Gradient checkpointing's memory and time: one Faster R-CNN training step (forward +
backward) per backbone, plain and with ``model.backbone.checkpoint_stages`` set, at a
batch of ``--batch`` images of ``--size`` px with 4 objects each: peak MiB of live tensors
(visdet.bench.measure.peak_memory_mb; the CUDA allocator's peak on a GPU) and the median time.

    .venv/bin/python scripts/checkpoint_memory.py [--size 256 --batch 4 --device cpu]
"""

from __future__ import annotations

import argparse

import torch

from visdet.bench.measure import peak_memory_mb, time_ms
from visdet.config.presets import build_detector
from visdet.io.text_table import format_columns

# backbone override and its neck, as the backbone rows of docs/model_zoo.md
BACKBONES = {
    "resnet18": [],
    "resnet50": ["backbone=resnet50"],
    "convnext_tiny": ["backbone=convnext_tiny"],
    "vit_s16": ["backbone=vit_s16", "neck=simple_fpn"],
}
SETTINGS = ([], ["c2", "c3"], "all")


def batch(size: int, n: int, device: str):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g).to(device) for _ in range(n)]
    targets = []
    for _ in images:
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        boxes = torch.cat([xy, xy + size * (0.1 + 0.3 * torch.rand(4, 2, generator=g))], 1)
        labels = torch.randint(1, 5, (4,), generator=g)
        targets.append({"boxes": boxes.clamp(max=size).to(device), "labels": labels.to(device)})
    return images, targets


def row(name: str, overrides: list[str], stages, size: int, n: int, device: str) -> list[str]:
    torch.manual_seed(0)
    detector = build_detector("faster_rcnn_r18_fpn", 4, overrides).to(device).train()
    detector.backbone.checkpoint_stages(stages)
    images, targets = batch(size, n, device)

    def step():
        sum(detector(images, targets).values()).backward()
        detector.zero_grad(set_to_none=True)

    peak, _ = peak_memory_mb(step, device)
    stats = time_ms(step, 3, 1, device)
    label = stages if isinstance(stages, str) else ",".join(stages) or "none"
    return [name, label, f"{peak:.0f}", f"{stats['median']:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = []
    for name, overrides in BACKBONES.items():
        for stages in SETTINGS:
            if name == "vit_s16" and stages == ["c2", "c3"]:
                continue  # a ViT has one stage (tokens)
            rows.append(row(name, overrides, stages, args.size, args.batch, args.device))
            print(" ".join(rows[-1]), flush=True)
    header = ["backbone", "checkpointed stages", "peak MiB", "median ms"]
    print(f"\nFaster R-CNN training step, {args.batch} images of {args.size} px, {args.device}")
    print("\n".join(format_columns([header, *rows], right=(2, 3), rule=True)))


if __name__ == "__main__":
    main()
