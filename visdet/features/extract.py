"""Feature extraction: per-image feature vectors and, from a CSV of points, point features.

Every image under ``images`` (searched recursively) is resized to the encoder's declared
input size and encoded; its vector is ``global_avg_pool`` of the feature map. Points are
given in the original image's pixels; ``spatial_point`` maps them onto the feature map with
the original size as its source size (so resizing does not move them).

Outputs in ``output_dir`` (each written atomically):
- ``features.npy`` (or ``.pt``) [N, C] and ``index.csv`` (row, image, height, width);
- with points: ``point_features.npy`` [P, C] and ``point_index.csv`` (row, image, point_id,
  x, y).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from visdet.data.image_folder import IMAGE_EXTENSIONS, open_rgb, to_tensor
from visdet.io.atomic_write import write_bytes_atomic, write_text_atomic
from visdet.models.encoders import GeneralEncoder
from visdet.models.post_encoder import global_avg_pool, spatial_point

log = logging.getLogger(__name__)

FORMATS = ("npy", "pt")


def list_images(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (recursively, sorted); a single file is a list of one."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"extract.images: no such file or folder: {root}")
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ValueError(f"extract.images: no images ({', '.join(IMAGE_EXTENSIONS)}) in {root}")
    return files


def read_points(
    path: str | os.PathLike, names: set[str]
) -> dict[str, list[tuple[str, float, float]]]:
    """CSV with columns ``image,x,y`` (optional ``point_id``); image = path relative to the
    images folder. Returns image -> [(point_id, x, y)] in file order; a point without
    ``point_id`` is named after its CSV line (``line2``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"extract.points_csv: file not found: {path}")
    points: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image", "x", "y"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(
                f"{path}: needs columns image,x,y (optional point_id); missing {sorted(missing)}"
            )
        for line, row in enumerate(reader, start=2):
            if row["image"] not in names:
                raise ValueError(f"{path}:{line}: image {row['image']!r} is not among the images")
            try:
                x, y = float(row["x"]), float(row["y"])
            except ValueError:
                raise ValueError(
                    f"{path}:{line}: x and y must be numbers, got {row['x']!r}, {row['y']!r}"
                ) from None
            if not (np.isfinite(x) and np.isfinite(y)):
                raise ValueError(f"{path}:{line}: x and y must be finite")
            point_id = row.get("point_id") or f"line{line}"
            points[row["image"]].append((point_id, x, y))
    return points


def _save_array(array: Tensor, path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    if fmt == "npy":
        np.save(buf, array.numpy())
    else:
        torch.save(array, buf)
    write_bytes_atomic(path, buf.getvalue())


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


@torch.no_grad()
def extract_features(
    encoder: GeneralEncoder,
    images: str,
    output_dir: str,
    points_csv: str | None = None,
    interpolation: str = "bilinear",
    batch_size: int = 16,
    format: str = "npy",
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Encode every image (and point); returns a summary with the output paths and shapes."""
    if format not in FORMATS:
        raise ValueError(f"extract.format must be one of {FORMATS}, got {format!r}")
    if batch_size < 1:
        raise ValueError(f"extract.batch_size must be >= 1, got {batch_size}")
    if interpolation not in ("nearest", "bilinear"):
        raise ValueError(
            f"extract.interpolation must be nearest or bilinear, got {interpolation!r}"
        )
    root = Path(images)
    files = list_images(root)
    names = [p.relative_to(root).as_posix() if root.is_dir() else p.name for p in files]
    points = read_points(points_csv, set(names)) if points_csv else {}
    encoder = encoder.eval().to(device)
    _, height, width = encoder.input_shape
    vectors, index, point_vectors, point_index = [], [], [], []
    starts = range(0, len(files), batch_size)
    for start in tqdm(starts, desc="extracting features", unit="batch", disable=not progress):
        batch_files, batch_names = (
            files[start : start + batch_size],
            names[start : start + batch_size],
        )
        pil = [open_rgb(p) for p in batch_files]
        batch = torch.stack([to_tensor(im, (height, width)) for im in pil]).to(device)
        maps = encoder(batch)
        vectors.append(global_avg_pool(maps).cpu())
        for i, (name, im) in enumerate(zip(batch_names, pil)):
            src_w, src_h = im.size
            index.append([len(index), name, src_h, src_w])
            if points.get(name):
                xy = torch.tensor([[x, y] for _, x, y in points[name]])
                fmap = maps[i : i + 1].expand(len(xy), -1, -1, -1)
                point_vectors.append(spatial_point(fmap, xy, src_h, src_w, interpolation).cpu())
                point_index += [
                    [len(point_index) + k, name, pid, x, y]
                    for k, (pid, x, y) in enumerate(points[name])
                ]
    out = Path(output_dir)
    features = torch.cat(vectors)
    _save_array(features, out / f"features.{format}", format)
    write_text_atomic(out / "index.csv", _csv_text(["row", "image", "height", "width"], index))
    summary = {
        "images": len(files),
        "features": str(out / f"features.{format}"),
        "dim": features.shape[1],
    }
    if points_csv:
        dim = encoder.out_channels
        pf = torch.cat(point_vectors) if point_vectors else torch.zeros(0, dim)
        _save_array(pf, out / f"point_features.{format}", format)
        write_text_atomic(
            out / "point_index.csv", _csv_text(["row", "image", "point_id", "x", "y"], point_index)
        )
        summary.update(points=len(pf), point_features=str(out / f"point_features.{format}"))
    log.info("features: %s", summary)
    return summary
