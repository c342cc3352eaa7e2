"""Draw detection boxes with class-coloured labels (and instance masks) on a PIL image.

Line width and font size scale with the image (readable from about 200 px to 4000 px); each
label ("name 0.87") sits on a filled background in the class colour with black or white text,
whichever contrasts more, and always inside the image: above the box, or inside it at its top
edge when there is no room above. Instance masks are filled translucent in the class colour
(``MASK_ALPHA``) with an opaque one-pixel outline, the highest score on top, under the boxes.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

GOLDEN_RATIO_CONJUGATE = 0.618033988749895
MASK_ALPHA = 0.45  # opacity of a mask's fill


def class_color(index: int) -> tuple[int, int, int]:
    """A stable RGB colour for class ``index``; neighbouring indices get far-apart hues
    (golden-ratio steps around the colour wheel, alternating two brightness levels)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"class_color: index must be an int, got {type(index).__name__}")
    index = int(index)
    hue = (index * GOLDEN_RATIO_CONJUGATE) % 1.0
    value = 0.95 if index % 2 == 0 else 0.75
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return (round(r * 255), round(g * 255), round(b * 255))


def text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def line_width_for(width: int, height: int) -> int:
    """Box outline width in pixels: 1 px at 200 px images, 2 px at 640x480, 12 px at 4000x3000."""
    return max(1, round(math.sqrt(width * height) / 300))


def font_size_for(width: int, height: int) -> int:
    """Label font size in pixels: 11 px (the minimum) at 200 px, about 58 px at 4000x3000."""
    return max(11, round(math.sqrt(width * height) / 60))


def draw_boxes(
    image: Image.Image,
    boxes,
    labels,
    names: Sequence[str],
    scores=None,
    masks=None,
) -> Image.Image:
    """Return an RGB copy of ``image`` with the boxes (and masks) drawn.

    Args:
        image: any PIL image (converted to RGB; the original is not changed).
        boxes: [N,4] xyxy in image pixels (sequence, numpy array or tensor).
        labels: [N] class indices; they pick the colour (``class_color``).
        names: [N] strings written in the labels.
        scores: [N] or None; when given the label reads "name 0.87".
        masks: [N, H, W] bool (the image's size) or None.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"draw_boxes: image must be a PIL.Image.Image, got {type(image).__name__}")
    box_array = _as_numpy(boxes, "boxes").astype(np.float64)
    if box_array.size == 0:
        box_array = box_array.reshape(0, 4)
    if box_array.ndim != 2 or box_array.shape[1] != 4:
        raise ValueError(f"draw_boxes: boxes must have shape [N,4], got {list(box_array.shape)}")
    n = box_array.shape[0]
    label_array = _as_numpy(labels, "labels").reshape(-1)
    names = list(names)
    score_array = None if scores is None else _as_numpy(scores, "scores").reshape(-1)
    for arg, length in (("labels", len(label_array)), ("names", len(names))):
        if length != n:
            raise ValueError(f"draw_boxes: {arg} has {length} entries, boxes has {n}")
    if score_array is not None and len(score_array) != n:
        raise ValueError(f"draw_boxes: scores has {len(score_array)} entries, boxes has {n}")
    if not np.isfinite(box_array).all():
        raise ValueError("draw_boxes: boxes contain NaN or infinite coordinates")

    canvas = image.convert("RGB")
    if canvas is image:
        canvas = image.copy()
    if n == 0:
        return canvas
    if masks is not None:
        canvas = _draw_masks(canvas, _as_numpy(masks, "masks"), label_array)
    width, height = canvas.size
    line_width = line_width_for(width, height)
    font = ImageFont.load_default(size=font_size_for(width, height))
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        x1, y1, x2, y2 = box_array[i]
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        color = class_color(int(label_array[i]))
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line_width)
        text = str(names[i]) if score_array is None else f"{names[i]} {float(score_array[i]):.2f}"
        _draw_label(draw, text, font, color, (x1, y1), (width, height))
    return canvas


def _draw_masks(canvas: Image.Image, masks: np.ndarray, labels: np.ndarray) -> Image.Image:
    """Each mask filled at ``MASK_ALPHA`` in its class colour with an opaque outline (its
    pixels with a 4-neighbour outside it), drawn from the last to the first."""
    width, height = canvas.size
    if masks.ndim != 3 or masks.shape[0] != len(labels) or masks.shape[1:] != (height, width):
        raise ValueError(
            f"draw_boxes: masks must have shape [{len(labels)}, {height}, {width}] (one per box, "
            f"the image's size), got {list(masks.shape)}"
        )
    pixels = np.asarray(canvas, dtype=np.float64).copy()
    for i in reversed(range(len(labels))):
        mask = masks[i].astype(bool)
        if not mask.any():
            continue
        color = np.array(class_color(int(labels[i])), dtype=np.float64)
        pixels[mask] = (1 - MASK_ALPHA) * pixels[mask] + MASK_ALPHA * color
        padded = np.pad(mask, 1)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        pixels[mask & ~inner] = color
    return Image.fromarray(np.round(pixels).astype(np.uint8), "RGB")


def _draw_label(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    color: tuple[int, int, int],
    box_top_left: tuple[float, float],
    image_size: tuple[int, int],
) -> None:
    """Filled label rectangle above the box (or inside its top edge), kept inside the image."""
    width, height = image_size
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(1, round((bottom - top) * 0.15))
    label_w = right - left + 2 * pad
    label_h = bottom - top + 2 * pad
    x, y = box_top_left
    y = y - label_h if y - label_h >= 0 else y
    x = min(max(x, 0.0), max(width - label_w, 0))
    y = min(max(y, 0.0), max(height - label_h, 0))
    draw.rectangle((x, y, x + label_w - 1, y + label_h - 1), fill=color)
    draw.text((x + pad - left, y + pad - top), text, fill=text_color(color), font=font)


def _as_numpy(values, arg: str) -> np.ndarray:
    """A numpy view of a sequence, numpy array or tensor (tensors are detached, moved to CPU)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"draw_boxes: {arg} must be array-like, got {type(values).__name__}"
        ) from error


def to_pil(image: torch.Tensor) -> Image.Image:
    """A float [3, H, W] tensor in [0, 1] as an 8-bit RGB PIL image."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"to_pil: image must have shape [3, H, W], got {list(image.shape)}")
    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB")
