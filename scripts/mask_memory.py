"""Memory of instance masks, two tables:

1. Pasting N masks into one image: visdet's ``paste_masks_in_image`` (float and bool output)
   beside torchvision's allocation pattern (one full image per mask, then a stack), the same
   resampling in all three: peak MiB of live tensors during the call
   (visdet.bench.measure.peak_memory_mb: every op's output storages) and the median time.
2. One Mask R-CNN R18-FPN training step (forward + backward, the main job's batch of 8 images
   of 128 px) with more and more ground-truth objects per image: peak tensor MiB and time.

    .venv/bin/python scripts/mask_memory.py [--height 800 --width 1333]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F

from visdet.bench.measure import peak_memory_mb, time_ms
from visdet.config.presets import build_detector
from visdet.io.text_table import format_columns
from visdet.ops.paste_masks import expand_boxes, paste_masks_in_image


def torchvision_pattern(masks, boxes, size, padding=1):
    """torchvision's ``paste_masks_in_image`` structure: a full zero image per mask."""
    m = masks.shape[-1]
    padded = F.pad(masks, (padding,) * 4)
    corners = expand_boxes(boxes, (m + 2 * padding) / m).to(torch.int64).tolist()
    out = []
    for i, (x0, y0, x1, y1) in enumerate(corners):
        w, h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        resized = F.interpolate(padded[i][None, None], size=(h, w), mode="bilinear",
                                align_corners=False)[0, 0]  # fmt: skip
        image = masks.new_zeros(size)
        top, bottom = max(y0, 0), min(y1 + 1, size[0])
        left, right = max(x0, 0), min(x1 + 1, size[1])
        image[top:bottom, left:right] = resized[top - y0 : bottom - y0, left - x0 : right - x0]
        out.append(image)
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1333)
    args = parser.parse_args()
    size = (args.height, args.width)
    rows = []
    for n in (10, 100, 300):
        g = torch.Generator().manual_seed(n)
        masks = torch.rand(n, 28, 28, generator=g)
        xy = torch.rand(n, 2, generator=g) * torch.tensor([size[1] * 0.8, size[0] * 0.8])
        wh = 20 + torch.rand(n, 2, generator=g) * 200
        boxes = torch.cat([xy, xy + wh], dim=1)
        methods = {
            "visdet float": partial(paste_masks_in_image, masks, boxes, size),
            "visdet bool (mask_threshold)": partial(
                paste_masks_in_image, masks, boxes, size, threshold=0.5
            ),
            "torchvision pattern": partial(torchvision_pattern, masks, boxes, size),
        }
        for name, fn in methods.items():
            peak, _ = peak_memory_mb(fn, "cpu")
            stats = time_ms(fn, 5, 1, "cpu")
            output = n * size[0] * size[1] * (1 if "bool" in name else 4) / 2**20
            rows.append([str(n), name, f"{peak:.1f}", f"{output:.1f}", f"{stats['median']:.1f}"])
    header = ["detections", "method", "peak MiB", "output MiB", "median ms"]
    print(f"pasting 28x28 masks into a {size[0]}x{size[1]} image")
    print("\n".join(format_columns([header, *rows], right=(0, 2, 3, 4), rule=True)))
    print("\nMask R-CNN R18-FPN training step, 8 images of 128x128")
    rows = [training_row(n) for n in (4, 32, 128)]
    header = ["objects per image", "peak MiB", "median ms"]
    print("\n".join(format_columns([header, *rows], right=(0, 1, 2), rule=True)))


def training_row(objects: int) -> list[str]:
    torch.manual_seed(0)
    detector = build_detector("mask_rcnn_r18_fpn", 4).train()
    g = torch.Generator().manual_seed(objects)
    images = [torch.rand(3, 128, 128, generator=g) for _ in range(8)]
    targets = []
    for _ in images:
        xy = torch.rand(objects, 2, generator=g) * 100
        boxes = torch.cat([xy, xy + 8 + torch.rand(objects, 2, generator=g) * 20], 1)
        boxes = boxes.clamp(max=128)
        masks = torch.zeros(objects, 128, 128, dtype=torch.uint8)
        for j, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            masks[j, y1:y2, x1:x2] = 1
        labels = torch.randint(1, 5, (objects,), generator=g)
        targets.append({"boxes": boxes, "labels": labels, "masks": masks})

    def step():
        losses = detector(images, targets)
        sum(losses.values()).backward()
        detector.zero_grad(set_to_none=True)

    peak, _ = peak_memory_mb(step, "cpu")
    stats = time_ms(step, 3, 1, "cpu")
    return [str(objects), f"{peak:.0f}", f"{stats['median']:.0f}"]


if __name__ == "__main__":
    main()
