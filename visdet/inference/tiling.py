"""Sliced (tiled) inference: small objects in large images.

The image is cut into square tiles of ``size`` pixels that overlap by ``overlap`` of their
side; the last row and column are shifted inward so every tile lies inside the image (an image
side shorter than ``size`` gives tiles as long as that side). Each tile is predicted like a
whole image (resized by the detector's preprocessing, batched), its boxes are shifted back to
the image, a pass over the full image is added when ``full_image``, and everything is merged by
class-wise NMS (``visdet.ops.batched_nms`` at ``nms_thresh``), highest scores first.

A tile sees only a piece of an object its border cuts. After the NMS, a box that touches an
inner tile border (within ``CUT_MARGIN`` px; image borders do not count) is dropped when a box
of the same class that touches none (found whole, in another tile or in the full-image pass)
covers more than ``nms_thresh`` of its area. Pieces of an object that no pass sees whole (larger
than a tile, with ``full_image`` off) remain, one per tile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from visdet.ops import batched_nms

MIN_TILE_SIZE = 32
CUT_MARGIN = 2.0  # px: a box this close to an inner tile border may be a cut piece


@dataclass(frozen=True)
class TileSettings:
    """How to tile: ``size`` px (>= 32), ``overlap`` in [0, 1) of the tile side, a
    ``full_image`` pass besides the tiles, and the IoU of the merging NMS."""

    size: int = 512
    overlap: float = 0.2
    full_image: bool = True
    nms_thresh: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise TypeError(f"tile.size must be an int, got {self.size!r}")
        if self.size < MIN_TILE_SIZE:
            raise ValueError(f"tile.size must be >= {MIN_TILE_SIZE} px, got {self.size}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, (int, float)):
            raise TypeError(f"tile.overlap must be a number, got {self.overlap!r}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"tile.overlap must be in [0, 1), got {self.overlap}")
        if not isinstance(self.full_image, bool):
            raise TypeError(f"tile.full_image must be true or false, got {self.full_image!r}")
        if isinstance(self.nms_thresh, bool) or not isinstance(self.nms_thresh, (int, float)):
            raise TypeError(f"tile.nms_thresh must be a number, got {self.nms_thresh!r}")
        if not 0 <= self.nms_thresh <= 1:
            raise ValueError(f"tile.nms_thresh must be in [0, 1], got {self.nms_thresh}")

    @classmethod
    def from_value(cls, value: TileSettings | Mapping | None) -> TileSettings | None:
        """``None`` (no tiling), a TileSettings, or a mapping of its fields (missing ones take
        the defaults); an unknown key is a ValueError naming the allowed ones."""
        if value is None or isinstance(value, TileSettings):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(
                f"tile must be null or a mapping like {{size: 512, overlap: 0.2}}, got "
                f"{type(value).__name__}"
            )
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ValueError(f"tile: unknown keys {unknown}; allowed: {', '.join(allowed)}")
        return cls(**dict(value))


def tile_starts(length: int, size: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``size`` along a side of ``length`` px: steps of
    ``round(size * (1 - overlap))`` (at least 1), the last one moved to ``length - size``
    so it ends at the border; ``[0]`` when the side is not longer than ``size``."""
    if length <= size:
        return [0]
    step = max(1, round(size * (1 - overlap)))
    count = math.ceil((length - size) / step) + 1
    return [min(i * step, length - size) for i in range(count)]


def tile_windows(
    height: int, width: int, settings: TileSettings
) -> list[tuple[int, int, int, int]]:
    """The tiles of an image as (x1, y1, x2, y2) pixel windows, row by row."""
    size, overlap = settings.size, settings.overlap
    return [
        (x, y, min(x + size, width), min(y + size, height))
        for y in tile_starts(height, size, overlap)
        for x in tile_starts(width, size, overlap)
    ]


def predict_tiled(
    predict: Callable[[list[Tensor]], list[dict[str, Tensor]]],
    image: Tensor,
    settings: TileSettings,
) -> dict[str, Tensor]:
    """Tiled prediction of one image [3, H, W].

    ``predict`` maps a list of images to one dict each (``boxes`` [N, 4] xyxy in that image's
    pixels, ``scores`` [N], ``labels`` [N]), batching as it likes. Returns the merged dict
    in ``image``'s pixels, sorted by decreasing score. An image that fits in one tile is
    predicted once, whole.
    """
    height, width = int(image.shape[-2]), int(image.shape[-1])
    windows = tile_windows(height, width, settings)
    if windows == [(0, 0, width, height)]:
        return predict([image])[0]
    if settings.full_image:
        windows.append((0, 0, width, height))  # no inner borders: its boxes count as whole
    crops = [image[:, y1:y2, x1:x2] for x1, y1, x2, y2 in windows]
    return merge_tile_predictions(predict(crops), windows, (height, width), settings.nms_thresh)


def merge_tile_predictions(
    preds: list[dict[str, Tensor]],
    windows: list[tuple[int, int, int, int]],
    image_size: tuple[int, int],
    nms_thresh: float,
) -> dict[str, Tensor]:
    """Merge the predictions of tiles ``windows`` (x1, y1, x2, y2) of an image of
    ``image_size`` (H, W): boxes shifted by their window's origin, class-wise NMS at
    ``nms_thresh``, then cut pieces dropped (see the module docstring). Decreasing score."""
    if len(preds) != len(windows):
        raise ValueError(f"{len(preds)} tile predictions for {len(windows)} windows")
    height, width = image_size
    boxes, cut = [], []
    for pred, (x1, y1, x2, y2) in zip(preds, windows):
        shifted = pred["boxes"] + pred["boxes"].new_tensor([x1, y1, x1, y1])
        boxes.append(shifted)
        cut.append(
            ((shifted[:, 0] <= x1 + CUT_MARGIN) & (x1 > 0))
            | ((shifted[:, 1] <= y1 + CUT_MARGIN) & (y1 > 0))
            | ((shifted[:, 2] >= x2 - CUT_MARGIN) & (x2 < width))
            | ((shifted[:, 3] >= y2 - CUT_MARGIN) & (y2 < height))
        )
    boxes_all, cut_all = torch.cat(boxes), torch.cat(cut)
    scores = torch.cat([p["scores"] for p in preds])
    labels = torch.cat([p["labels"] for p in preds])
    keep = batched_nms(boxes_all, scores, labels, nms_thresh)
    keep = keep[~_covered_pieces(boxes_all[keep], labels[keep], cut_all[keep], nms_thresh)]
    return {"boxes": boxes_all[keep], "scores": scores[keep], "labels": labels[keep]}


def _covered_pieces(boxes: Tensor, labels: Tensor, cut: Tensor, thresh: float) -> Tensor:
    """bool [N]: cut boxes more than ``thresh`` of whose area lies inside an uncut box of the
    same class."""
    if not cut.any() or cut.all():
        return torch.zeros_like(cut)
    low = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(dim=2)  # [N, N]: piece i, whole j
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    covers = (inter > thresh * area[:, None]) & (labels[:, None] == labels[None, :])
    covers &= ~cut[None, :]
    return cut & covers.any(dim=1)
