"""The error gallery of the evaluation report: the images with the most errors, each drawn
twice (ground truth | predictions) with ``visdet.visualize.draw.draw_boxes``.

``worst_images`` picks the image ids; the caller loads those images and describes each as a
``GalleryImage``; ``gallery_entries`` draws them into the entries ``write_report_html``
embeds.
"""

from __future__ import annotations

import io
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png")}


@dataclass(frozen=True)
class GalleryImage:
    """One image of the gallery, boxes in the pixels of ``image``.

    gt_boxes: [G,4] xyxy; gt_labels: [G] class indices (they pick the colour); gt_names: [G].
    det_boxes: [D,4] xyxy; det_labels: [D]; det_names: [D]; det_scores: [D].
    errors: the image's error count (e.g. TIDE's ``per_image_errors``), shown in the report.
    """

    image: Image.Image
    file_name: str
    gt_boxes: Any
    gt_labels: Any
    gt_names: Sequence[str]
    det_boxes: Any
    det_labels: Any
    det_names: Sequence[str]
    det_scores: Any
    errors: int = 0


def worst_images(per_image_errors: Mapping[int, int], k: int) -> list[int]:
    """The ids of the (at most) ``k`` images with the most errors, most first, ties by image
    id (ascending). Images with no error are never picked."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
        raise ValueError(f"k: expected an int >= 0, got {k!r}")
    for image_id, count in per_image_errors.items():
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
            raise ValueError(f"per_image_errors[{image_id!r}]: expected an int >= 0, got {count!r}")
    ranked = sorted((-int(n), image_id) for image_id, n in per_image_errors.items() if n > 0)
    return [image_id for _, image_id in ranked[:k]]


def gallery_entries(
    images: Sequence[GalleryImage],
    max_side: int = 640,
    score_thresh: float = 0.3,
    image_format: str = "jpeg",
) -> list[dict]:
    """Draw each image twice: its ground truth, and its detections with ``score >=
    score_thresh``, after downscaling so that the longer side is at most ``max_side`` px
    (boxes scaled alike; smaller images are kept as they are).

    Returns one dict per image, in order: ``file_name``, ``errors``, ``num_gt``, ``num_det``
    (the detections drawn), ``mime`` ("image/jpeg" or "image/png"), and ``gt_image`` and
    ``pred_image``, the encoded panels (bytes). ``image_format``: "jpeg" (small) or "png".
    """
    from visdet.visualize.draw import draw_boxes

    if image_format not in FORMATS:
        raise ValueError(f"image_format: expected one of {sorted(FORMATS)}, got {image_format!r}")
    if isinstance(max_side, bool) or not isinstance(max_side, numbers.Integral) or max_side < 16:
        raise ValueError(f"max_side: expected an int >= 16, got {max_side!r}")
    pil_format, mime = FORMATS[image_format]
    entries = []
    for i, item in enumerate(images):
        if not isinstance(item, GalleryImage):
            raise TypeError(f"images[{i}]: expected a GalleryImage, got {type(item).__name__}")
        if not isinstance(item.image, Image.Image):
            raise TypeError(
                f"images[{i}].image: expected a PIL image, got {type(item.image).__name__}"
            )
        small, scale = _downscaled(item.image.convert("RGB"), max_side)
        gt_boxes = _boxes(item.gt_boxes, f"images[{i}].gt_boxes") * scale
        det_boxes = _boxes(item.det_boxes, f"images[{i}].det_boxes") * scale
        scores = np.asarray(item.det_scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(det_boxes):
            raise ValueError(
                f"images[{i}].det_scores: expected {len(det_boxes)} scores (one per box), "
                f"got {len(scores)}"
            )
        keep = np.flatnonzero(scores >= score_thresh)
        det_labels = np.asarray(item.det_labels).reshape(-1)
        det_names = list(item.det_names)
        if len(det_labels) != len(det_boxes) or len(det_names) != len(det_boxes):
            raise ValueError(
                f"images[{i}]: expected {len(det_boxes)} det_labels and det_names (one per "
                f"box), got {len(det_labels)} and {len(det_names)}"
            )
        gt_panel = draw_boxes(small, gt_boxes, item.gt_labels, item.gt_names)
        pred_panel = draw_boxes(
            small, det_boxes[keep], det_labels[keep], [det_names[j] for j in keep], scores[keep]
        )
        entries.append(
            {
                "file_name": str(item.file_name),
                "errors": int(item.errors),
                "num_gt": len(gt_boxes),
                "num_det": len(keep),
                "mime": mime,
                "gt_image": _encode(gt_panel, pil_format),
                "pred_image": _encode(pred_panel, pil_format),
            }
        )
    return entries


def _downscaled(image: Image.Image, max_side: int) -> tuple[Image.Image, np.ndarray]:
    """``image`` resized so that its longer side is at most ``max_side``, and the [4] factors
    (x, y, x, y) that map its boxes to the new size."""
    w, h = image.size
    if max(w, h) <= max_side:
        return image, np.ones(4)
    ratio = max_side / max(w, h)
    new = (max(1, round(w * ratio)), max(1, round(h * ratio)))
    sx, sy = new[0] / w, new[1] / h
    return image.resize(new, Image.Resampling.LANCZOS), np.array([sx, sy, sx, sy])


def _boxes(boxes: Any, name: str) -> np.ndarray:
    if hasattr(boxes, "detach"):
        boxes = boxes.detach().cpu().numpy()
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name}: expected shape [N,4] xyxy, got {list(array.shape)}")
    return array


def _encode(image: Image.Image, pil_format: str) -> bytes:
    buf = io.BytesIO()
    if pil_format == "JPEG":
        image.save(buf, format="JPEG", quality=85)
    else:
        image.save(buf, format="PNG")
    return buf.getvalue()
