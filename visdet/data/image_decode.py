"""Decoding an image file as people see it: EXIF orientation applied, every Pillow mode turned
into RGB float [3, H, W] in [0, 1].

Modes: 8-bit ones (1, L, P, RGB, CMYK, YCbCr, ...) through Pillow's RGB conversion, divided by
255; alpha (LA, PA, RGBA) is dropped, not composited; 16-bit integer modes (I;16*, and I,
which is how Pillow opens 16-bit PNGs) are divided by 65535 (clipped to [0, 1] only for values
outside 16 bits); F (float) is taken as [0, 1] when it fits there, else scaled by 255 or 65535,
whichever range holds it. Greyscale becomes three equal channels.

Pillow's decompression-bomb check is replaced by ``max_pixels`` (Pillow's
``Image.MAX_IMAGE_PIXELS`` by default): a larger image is refused with ``UnreadableImage``.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

ORIENTATION_TAG = 0x0112
SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees

# what Pillow raises for a broken, truncated or unsupported file
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


class UnreadableImage(Exception):
    """The file cannot be decoded (message: why)."""


def _why(e: Exception, path) -> str:
    text = str(e).replace(f" {str(path)!r}", "").strip()
    return text or type(e).__name__


def default_max_pixels() -> int | None:
    """Pillow's limit (``Image.MAX_IMAGE_PIXELS``, 89478485 unless changed)."""
    with _bomb_lock:
        return _bomb_state["saved"] if _bomb_state["depth"] else Image.MAX_IMAGE_PIXELS


_bomb_lock = threading.Lock()
_bomb_state = {"depth": 0, "saved": None}


@contextlib.contextmanager
def _own_bomb_check():
    """Pillow's own check off (it warns, or raises at twice its limit): ours decides. Pillow
    reads a module global, so it is switched off while any thread is inside and restored when
    the last one leaves."""
    with _bomb_lock:
        if _bomb_state["depth"] == 0:
            _bomb_state["saved"] = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _bomb_state["depth"] += 1
    try:
        yield
    finally:
        with _bomb_lock:
            _bomb_state["depth"] -= 1
            if _bomb_state["depth"] == 0:
                Image.MAX_IMAGE_PIXELS = _bomb_state["saved"]


@dataclass(frozen=True)
class ImageHeader:
    """What the file's header says: raw (width, height) and the EXIF orientation (1 = none)."""

    size: tuple[int, int]
    orientation: int

    @property
    def oriented_size(self) -> tuple[int, int]:
        w, h = self.size
        return (h, w) if self.orientation in SWAPS_SIDES else (w, h)


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(ORIENTATION_TAG, 1))
    except DECODE_ERRORS:  # a broken EXIF block: treat as unrotated
        return 1
    return value if 1 <= value <= 8 else 1


def _check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise UnreadableImage(
            f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels is above the decompression-bomb "
            f"limit of {max_pixels} (data.max_image_pixels)"
        )


def read_header(path: str | Path, max_pixels: int | None = None) -> ImageHeader:
    """Size and orientation without decoding the pixels; ``UnreadableImage`` if the file is
    not an image Pillow can open or is above ``max_pixels``."""
    try:
        with _own_bomb_check(), Image.open(path) as im:
            header = ImageHeader(im.size, _orientation(im))
    except FileNotFoundError:
        raise
    except DECODE_ERRORS as e:
        raise UnreadableImage(_why(e, path)) from None
    _check_pixels(header.size, max_pixels)
    return header


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1] from an image of any Pillow mode."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(im).astype(np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if mode == "F":
        grey = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(grey.max()) if grey.size else 0.0
        scale = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
        return np.repeat(np.clip(grey / scale, 0.0, 1.0)[..., None], 3, axis=2)
    if mode in ("LA", "La"):
        im = im.getchannel("L")
    elif mode in ("PA", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        rgb = np.asarray(im, dtype=np.uint8)[..., :3]
    else:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return rgb.astype(np.float32) / 255.0


def decode_image(
    path: str | Path, apply_orientation: bool = True, max_pixels: int | None = None
) -> torch.Tensor:
    """The image as float [3, H, W] in [0, 1]; EXIF orientation applied unless
    ``apply_orientation`` is False. ``UnreadableImage`` for a broken, truncated or too large
    file."""
    try:
        with _own_bomb_check(), Image.open(path) as im:
            _check_pixels(im.size, max_pixels)
            im.load()
            if apply_orientation and _orientation(im) != 1:
                im = ImageOps.exif_transpose(im)
            array = to_rgb_array(im)
    except FileNotFoundError as e:
        raise UnreadableImage(f"file not found: {e.filename}") from None
    except DECODE_ERRORS as e:
        raise UnreadableImage(_why(e, path)) from None
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()


def open_oriented(path: str | Path, annotated_size: tuple[int, int] | None = None) -> Image.Image:
    """The image at ``path`` as a PIL RGB image, EXIF orientation applied unless only the
    raw pixels have ``annotated_size`` (width, height); 16-bit, float and alpha modes are
    converted as in ``to_rgb_array``. ``UnreadableImage`` when it cannot be decoded."""
    try:
        with _own_bomb_check(), Image.open(path) as im:
            im.load()
            raw_size, orientation = im.size, _orientation(im)
            if orientation != 1:
                turned = ImageHeader(raw_size, orientation).oriented_size
                if (
                    annotated_size is None
                    or tuple(annotated_size) != raw_size
                    or (turned == tuple(annotated_size))
                ):
                    im = ImageOps.exif_transpose(im)
            if im.mode in ("1", "L", "P", "RGB", "CMYK", "YCbCr"):
                return im.convert("RGB")
            array = np.round(to_rgb_array(im) * 255.0).astype(np.uint8)
    except FileNotFoundError as e:
        raise UnreadableImage(f"file not found: {e.filename}") from None
    except DECODE_ERRORS as e:
        raise UnreadableImage(_why(e, path)) from None
    return Image.fromarray(array, "RGB")
