"""What the model sees: a grid of training samples before and after the training augmentation.

Each cell is a pair of tiles: the image resized as in validation (``augment(..., train=False)``)
and the same image after the training augmentation (``augment(..., train=True, step=0)``, all
samples as one batch),
boxes and class names drawn (visdet.visualize.draw_boxes) and a small caption above each tile.
Samples are a seeded choice from the dataset; the augmentation runs on the CPU under a forked
torch generator seeded with ``seed`` (Python's and NumPy's global states saved and restored),
so the preview is the same for the same seed and leaves every random stream of the caller as
it was. Used by ``visdet data preview`` and, once per training run, by the
AugmentationPreview callback.
"""

from __future__ import annotations

import copy
import io
import math
import os
import random
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from visdet.data.coco import SkippedImage
from visdet.io.atomic_write import write_bytes_atomic
from visdet.visualize.draw import draw_boxes, to_pil

PAD = 8  # pixels between cells and around the grid
PAIR_GAP = 2  # pixels between the two tiles of a pair
CAPTION_HEIGHT = 14  # pixels of caption strip above each tile
CAPTION_FONT_SIZE = 11
BACKGROUND = (40, 40, 40)
CAPTION_COLOR = (230, 230, 230)


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, columns)`` of pairs for ``n`` samples: ``ceil(sqrt(n))`` pairs per row."""
    if n < 1:
        raise ValueError(f"grid_shape: n must be >= 1, got {n}")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def grid_size(n: int, tile: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of the grid of ``n`` pairs of ``tile`` x ``tile`` tiles."""
    rows, cols = grid_shape(n)
    return cols * (2 * tile + PAIR_GAP + PAD) + PAD, rows * (tile + CAPTION_HEIGHT + PAD) + PAD


def draw_sample(image: Tensor, target: dict, class_names: Sequence[str]) -> Image.Image:
    """The image with its boxes (``target["boxes"]`` [N, 4] xyxy pixels) and class names
    (``target["labels"]`` [N], 1-based into ``class_names``) drawn."""
    labels = [int(v) for v in target["labels"]]
    names = [class_names[v - 1] if 1 <= v <= len(class_names) else str(v) for v in labels]
    return draw_boxes(to_pil(image), target["boxes"], labels, names)


def choose_samples(dataset, n: int, seed: int) -> list[tuple[int, Tensor, dict]]:
    """Up to ``n`` decodable samples ``(index, image [3, H, W], target)`` in a seeded random
    order of the dataset (images that cannot be decoded are passed over)."""
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    chosen = []
    for index in order:
        item = dataset[index]
        if item is None or isinstance(item, SkippedImage):
            continue
        chosen.append((index, item[0], item[1]))
        if len(chosen) == n:
            break
    return chosen


def augmentation_preview(
    dataset,
    augment,
    n: int = 16,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> Image.Image:
    """The before/after grid (see the module docstring) as an RGB PIL image.

    Args:
        dataset: indexable, ``dataset[i] -> (image [3, H, W] float in [0, 1], target)`` with
            target ``{"boxes": [N, 4] xyxy pixels, "labels": [N] 1-based, ...}`` (a
            CocoDetection); ``SkippedImage`` items are passed over.
        augment: a DetectionAugment (``augment(images, targets, train, step)``).
        n: the number of samples (fewer when the dataset has fewer decodable images).
        seed: picks the samples and seeds the augmentation's random draws.
        class_names: names of labels 1..K; default ``dataset.class_names``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"augmentation preview: n must be an integer >= 1, got {n!r}")
    if len(dataset) == 0:
        raise ValueError("augmentation preview: the dataset has no images")
    names = list(class_names if class_names is not None else getattr(dataset, "class_names", []))
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pairs = _pairs(choose_samples(dataset, n, seed), augment, names)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002
    if not pairs:
        raise ValueError("augmentation preview: no image of the dataset could be decoded")
    return _layout(pairs)


def _pairs(samples, augment, names: list[str]) -> list[tuple[Image.Image, str, Image.Image, str]]:
    """``(before, caption, after, caption)`` per sample. The samples are augmented as one
    training batch by a copy of ``augment`` (mosaic and mixup draw their partners from the
    other samples; the caller's sample buffer is left as it was)."""
    augment = copy.deepcopy(augment)
    if getattr(augment, "buffer", None) is not None:
        augment.buffer.clear()
    images = [image.cpu() for _, image, _ in samples]
    targets = [{**t, "boxes": t["boxes"].cpu(), "labels": t["labels"].cpu()} for _, _, t in samples]
    before, before_t = augment(images, [dict(t) for t in targets], train=False)
    after, after_t = augment(images, [dict(t) for t in targets], train=True, step=0)
    pairs = []
    for k, (index, _, _) in enumerate(samples):
        pairs.append(
            (
                draw_sample(before[k], before_t[k], names),
                f"#{index} {before[k].shape[-1]}x{before[k].shape[-2]}",
                draw_sample(after[k], after_t[k], names),
                f"aug {after[k].shape[-1]}x{after[k].shape[-2]}, "
                f"{_boxes(len(after_t[k]['labels']))}",
            )
        )
    return pairs


def _boxes(count: int) -> str:
    return "1 box" if count == 1 else f"{count} boxes"


def _layout(pairs: list[tuple[Image.Image, str, Image.Image, str]]) -> Image.Image:
    tile = max(max(im.size) for before, _, after, _ in pairs for im in (before, after))
    rows, cols = grid_shape(len(pairs))
    canvas = Image.new("RGB", grid_size(len(pairs), tile), BACKGROUND)
    font = ImageFont.load_default(size=CAPTION_FONT_SIZE)
    for k, (before, before_caption, after, after_caption) in enumerate(pairs):
        row, col = divmod(k, cols)
        x = PAD + col * (2 * tile + PAIR_GAP + PAD)
        y = PAD + row * (tile + CAPTION_HEIGHT + PAD)
        for j, (im, caption) in enumerate(((before, before_caption), (after, after_caption))):
            left = x + j * (tile + PAIR_GAP)
            strip = Image.new("RGB", (tile, CAPTION_HEIGHT), BACKGROUND)  # clips the text
            ImageDraw.Draw(strip).text((2, 1), caption, fill=CAPTION_COLOR, font=font)
            canvas.paste(strip, (left, y))
            canvas.paste(im, (left, y + CAPTION_HEIGHT))
    return canvas


def write_preview(image: Image.Image, path: str | os.PathLike) -> None:
    """Write ``image`` as a PNG to ``path`` atomically (visdet.io.atomic_write)."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"write_preview: image must be a PIL.Image.Image, got {type(image)}")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())
