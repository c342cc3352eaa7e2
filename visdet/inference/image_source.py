"""Where prediction images come from: a source (file, folder, glob pattern or a .txt list of
paths) turned into a list of image files, and any single image (path, PIL image, numpy array,
tensor) turned into the detector's input, float [3, H, W] in [0, 1]."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from visdet.data.image_decode import ORIENTATION_TAG, decode_image, to_rgb_array
from visdet.data.image_folder import IMAGE_EXTENSIONS

GLOB_CHARACTERS = "*?["
LIST_SUFFIX = ".txt"


@dataclass(frozen=True)
class SourceImage:
    """One image of a source: its file and its name in outputs (the path relative to the
    source's folder, with ``/`` separators; the file name for a single file)."""

    path: Path
    name: str


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(source: str | os.PathLike, recursive: bool = False) -> list[SourceImage]:
    """The images of ``source``:

    - an image file: itself;
    - a ``.txt`` file: the paths it lists, one per line (relative ones are relative to the
      list's folder; blank lines and lines starting with ``#`` are skipped), in its order;
    - a folder: its files with an image extension (``IMAGE_EXTENSIONS``), sorted; subfolders
      too when ``recursive``;
    - a glob pattern (``*``, ``?``, ``[``; ``**`` spans folders): the matching image files,
      sorted.

    ValueError when the source holds no image, or two images would get the same name;
    FileNotFoundError when it does not exist. Files listed in a .txt are not checked here
    (an unreadable one fails when decoded)."""
    text = os.fspath(source)
    if not text:
        raise ValueError("source: empty; expected an image file, a folder, a glob or a .txt list")
    path = Path(text)
    if path.is_file() and path.suffix.lower() == LIST_SUFFIX:
        images = _listed_images(path)
    elif path.is_file():
        images = [SourceImage(path, path.name)]
    elif path.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in path.glob(pattern) if is_image_file(p))
        images = [SourceImage(p, p.relative_to(path).as_posix()) for p in files]
    elif any(c in text for c in GLOB_CHARACTERS):
        base = _glob_base(text)
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if is_image_file(Path(p)))
        images = [SourceImage(p, _name_under(p, base)) for p in files]
    else:
        raise FileNotFoundError(f"source: {text}: no such file, folder or glob match")
    if not images:
        raise ValueError(
            f"source: {text}: no images found (extensions {', '.join(IMAGE_EXTENSIONS)}"
            + ("" if recursive or not path.is_dir() else "; subfolders need recursive=true")
            + ")"
        )
    _check_unique_names(images, text)
    return images


def _listed_images(list_file: Path) -> list[SourceImage]:
    folder = list_file.parent
    images = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry) if Path(entry).is_absolute() else folder / entry
        images.append(SourceImage(path, _name_under(path, folder)))
    return images


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if any(c in part for c in GLOB_CHARACTERS):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _name_under(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (``/`` separators), or its file name when outside."""
    try:
        return Path(os.path.normpath(path)).relative_to(os.path.normpath(folder)).as_posix()
    except ValueError:
        return path.name


def _check_unique_names(images: list[SourceImage], source: str) -> None:
    seen: dict[str, Path] = {}
    for image in images:
        if image.name in seen:
            raise ValueError(
                f"source: {source}: {seen[image.name]} and {image.path} would both be written "
                f"as {image.name}; list each image once, from one folder"
            )
        seen[image.name] = image.path


def to_image_tensor(image, name: str = "image") -> Tensor:
    """One image as float32 [3, H, W] in [0, 1] (RGB).

    Accepts a path (str or Path: decoded by ``visdet.data.image_decode.decode_image``, EXIF
    orientation applied, any Pillow mode), a PIL image (EXIF orientation applied, any mode),
    a numpy uint8 array [H, W, 3] (RGB) or [H, W] (grey), or a float tensor [3, H, W] with
    values in [0, 1] (returned as it is, float32). ``name`` is used in errors."""
    if isinstance(image, (str, os.PathLike)):
        return decode_image(image)
    if isinstance(image, Image.Image):
        if image.getexif().get(ORIENTATION_TAG, 1) != 1:
            image = ImageOps.exif_transpose(image)
        return torch.from_numpy(np.ascontiguousarray(to_rgb_array(image))).permute(2, 0, 1)
    if isinstance(image, np.ndarray):
        return _from_numpy(image, name)
    if isinstance(image, Tensor):
        return _checked_tensor(image, name)
    raise TypeError(
        f"{name}: expected a path, a PIL image, a numpy uint8 [H,W,3] array or a float tensor "
        f"[3,H,W], got {type(image).__name__}"
    )


def _from_numpy(array: np.ndarray, name: str) -> Tensor:
    if array.dtype != np.uint8:
        raise TypeError(
            f"{name}: a numpy image must be uint8 (RGB, [H,W,3]), got dtype {array.dtype}; "
            "pass float images as a tensor [3,H,W] in [0, 1]"
        )
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name}: a numpy image must be [H,W,3] (RGB), got {list(array.shape)}")
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
    return tensor.to(torch.float32) / 255.0


def _checked_tensor(tensor: Tensor, name: str) -> Tensor:
    if not tensor.is_floating_point():
        raise TypeError(
            f"{name}: a tensor image must be float in [0, 1], got dtype {tensor.dtype} "
            "(divide uint8 images by 255)"
        )
    if tensor.dim() != 3 or tensor.shape[0] != 3 or tensor.shape[1] < 1 or tensor.shape[2] < 1:
        raise ValueError(f"{name}: a tensor image must be [3,H,W], got {list(tensor.shape)}")
    low, high = torch.aminmax(tensor)
    if not (low >= 0 and high <= 1):
        raise ValueError(
            f"{name}: tensor values must be in [0, 1], got [{low.item():.4g}, {high.item():.4g}]"
        )
    return tensor.to(torch.float32)
