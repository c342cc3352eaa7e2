"""Image classification from a folder tree: one sub-folder per class.

Items are ``(image, label)``: image float [3, H, W] RGB in [0, 1], resized to ``image_size``
(H, W) with PIL's bilinear filter; label an int64 scalar tensor in 0..K-1, the index of the
class folder in sorted name order. An unreadable image raises ValueError naming the file:
unlike detection, classification has no skipping contract.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from visdet.data.image_decode import UnreadableImage, open_oriented

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def check_image_size(image_size) -> tuple[int, int]:
    """``image_size`` as an (H, W) pair of positive ints, or ValueError naming it."""
    try:
        h, w = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a pair (H, W), got {image_size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return h, w


def open_rgb(path: Path, annotated_size: tuple[int, int] | None = None) -> Image.Image:
    """The decoded image at ``path`` in RGB, as people see it (EXIF orientation applied,
    16-bit and float modes scaled; see ``visdet.data.image_decode.open_oriented``, which
    ``annotated_size`` is passed to); ValueError naming the file if it cannot be read."""
    try:
        return open_oriented(path, annotated_size)
    except UnreadableImage as e:
        raise ValueError(f"cannot read image {path}: {e}") from None


def to_tensor(image: Image.Image, image_size: tuple[int, int]) -> torch.Tensor:
    """PIL RGB image -> float [3, H, W] in [0, 1], bilinearly resized to ``image_size``."""
    h, w = image_size
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>`` files as a classification dataset.

    Args:
        root: folder holding one sub-folder per class (hidden folders are ignored).
        image_size: (H, W) of every returned image.
        extensions: file name endings (case-insensitive) counted as images.

    Raises FileNotFoundError if ``root`` is missing and ValueError if it has no class
    folders or some class folder holds no images (such a class would never train).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: tuple[int, int] = (224, 224),
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = Path(root)
        self.image_size = check_image_size(image_size)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder root not found: {self.root}")
        exts = tuple(e.lower() for e in extensions)
        folders = sorted(
            p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not folders:
            raise ValueError(f"{self.root} has no class sub-folders (expected root/<class>/*)")
        self.classes: list[str] = [p.name for p in folders]
        self.samples: list[tuple[Path, int]] = []
        empty = []
        for label, folder in enumerate(folders):
            files = sorted(
                p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(exts)
            )
            if not files:
                empty.append(folder.name)
            self.samples.extend((p, label) for p in files)
        if empty:
            raise ValueError(
                f"class folders under {self.root} hold no images with extensions {exts}: {empty}"
            )
        if len(self.classes) < 2:
            log.warning("%s has only one class (%s)", self.root, self.classes[0])

    @property
    def paths(self) -> list[Path]:
        return [p for p, _ in self.samples]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.samples[index]
        image = to_tensor(open_rgb(path), self.image_size)
        return image, torch.tensor(label, dtype=torch.int64)
