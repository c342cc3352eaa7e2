"""Mosaic (YOLOv4, Ultralytics, MMDetection's ``Mosaic``): four training images around a random
centre on one canvas.

The canvas is ``size`` x ``size`` (the batch's training short side), filled with ``fill``. A
centre ``(cx, cy)`` is drawn uniformly in ``center`` times the canvas side; the four images are
placed with a corner on the centre, unscaled (they arrive resized to the training size): the
first above-left of it (its bottom-right corner on the centre), then above-right, below-left and
below-right; each shows the part of it that falls on the canvas. With ``center=(0, 1)`` this is
what Ultralytics and MMDetection produce (a 2s x 2s mosaic with the centre in [s/2, 3s/2] whose
central s x s window is kept). Pasting is integer slicing: pixels are copied, never resampled.
Boxes are shifted with their image and kept by ``visdet.data.boxes_in_view``; instance masks
(and crowd regions) are pasted with their image's pixels, each kept or dropped with its box.

Kornia's ``RandomMosaic`` was not used: it clips boxes to ``width - 1`` / ``height - 1`` (the
inclusive-corner convention, one pixel short in visdet's continuous coordinates) and keeps
zero-width boxes without saying which label they belong to.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from visdet.data.boxes_in_view import boxes_in_view


def draw_center(size: int, center: tuple[float, float]) -> tuple[int, int]:
    """A centre ``(cx, cy)`` in integer pixels, each uniform in ``center`` x ``size``."""
    u = torch.rand(2).tolist()
    lo, hi = center
    return tuple(round(size * (lo + (hi - lo) * v)) for v in u)


def mosaic(
    tiles: Sequence[tuple[Tensor, dict]],
    size: int,
    center: tuple[int, int],
    fill: float = 114 / 255,
    min_box_size: float = 2.0,
    min_visible: float = 0.0,
) -> tuple[Tensor, dict]:
    """The mosaic of four ``(image [3, H, W], target)`` tiles on a ``size`` x ``size`` canvas
    around ``center`` (cx, cy) in pixels; returns ``(image [3, size, size], target)`` with the
    first tile's other keys, all tiles' surviving boxes and labels."""
    if len(tiles) != 4:
        raise ValueError(f"mosaic needs 4 tiles, got {len(tiles)}")
    cx, cy = center
    first = tiles[0][0]
    canvas = first.new_full((first.shape[0], size, size), fill)
    boxes, labels, masks = [], [], []
    with_masks = "masks" in tiles[0][1]
    crowd = first.new_zeros((size, size), dtype=torch.uint8) if with_masks else None
    for k, (image, target) in enumerate(tiles):
        h, w = int(image.shape[-2]), int(image.shape[-1])
        ox = cx - w if k in (0, 2) else cx  # the image's top-left corner on the canvas
        oy = cy - h if k in (0, 1) else cy
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + w, size), min(oy + h, size)
        if x1 > x0 and y1 > y0:
            canvas[:, y0:y1, x0:x1] = image[:, y0 - oy : y1 - oy, x0 - ox : x1 - ox]
        moved = target["boxes"] + target["boxes"].new_tensor([ox, oy, ox, oy])
        clipped, keep = boxes_in_view(moved, (size, size), min_box_size, min_visible)
        boxes.append(clipped[keep])
        labels.append(target["labels"][keep])
        if with_masks:
            kept = target["masks"][keep]
            pasted = kept.new_zeros((len(kept), size, size))
            if x1 > x0 and y1 > y0:
                pasted[:, y0:y1, x0:x1] = kept[:, y0 - oy : y1 - oy, x0 - ox : x1 - ox]
                crowd[y0:y1, x0:x1] |= target["crowd"][y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            masks.append(pasted)
    out = {**tiles[0][1], "boxes": torch.cat(boxes), "labels": torch.cat(labels)}
    if with_masks:
        out["masks"], out["crowd"] = torch.cat(masks), crowd
    return canvas, out
