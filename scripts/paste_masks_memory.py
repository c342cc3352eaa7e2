"""Peak tensor memory and time of pasting N instance masks into one image: visdet's
``paste_masks_in_image`` (float and bool output) beside torchvision's allocation pattern (one
full image per mask, then a stack), the same resampling in all three.

    .venv/bin/python scripts/paste_masks_memory.py [--height 800 --width 1333]

Prints one table row per (detections, method): peak MiB of live tensors during the call
(visdet.bench.measure.peak_memory_mb: every op's output storages) and the median time.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F

from visdet.bench.measure import peak_memory_mb, time_ms
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


if __name__ == "__main__":
    main()
