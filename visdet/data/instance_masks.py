"""Instance masks in the data: compact COCO RLE from the dataset to the device, bitmaps there.

A COCO ``segmentation`` is polygons (a list of ``[x1, y1, x2, y2, ...]``), uncompressed RLE
(``counts`` a list) or compressed RLE (``counts`` a string); ``annotation_rle`` turns any of
them into one compressed RLE (pycocotools' ``frPyObjects`` / ``merge``: several polygons of one
object are one mask). Datasets hand RLEs on (a few hundred bytes an object instead of H x W);
``rasterize`` decodes them into a uint8 [N, H, W] tensor on the batch's device, where the
augmentation moves them with their images.

Crowd annotations (``iscrowd: 1``) are not objects to learn: their regions merged into one RLE
per image (``crowd_rle``) mark pixels to ignore.
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor


def annotation_rle(
    segmentation, height: int, width: int, where: str = "segmentation"
) -> dict | None:
    """One compressed RLE ``{"size": [h, w], "counts": bytes}`` of a COCO segmentation of an
    image of ``height`` x ``width``; degenerate polygons (fewer than 3 points) are left out
    (``degenerate_polygons`` counts them), and None is returned when none is left. A
    ValueError naming ``where`` for anything else (not polygons or an RLE, an RLE of another
    size, a polygon of non-numbers)."""
    if isinstance(segmentation, list):
        if not all(isinstance(p, list) for p in segmentation):
            raise ValueError(
                f"{where}: polygons must be a list of [x1, y1, x2, y2, ...] lists, got "
                f"{str(segmentation)[:80]}"
            )
        polygons = [p for p in segmentation if len(p) >= 6 and len(p) % 2 == 0]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   for p in polygons for v in p):  # fmt: skip
            raise ValueError(f"{where}: polygon coordinates must be numbers")
        if not polygons:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(
                f"{where}: RLE size {list(segmentation['size'])} is not the image's "
                f"[{height}, {width}]"
            )
        if isinstance(segmentation["counts"], list):  # uncompressed
            return mask_utils.frPyObjects(segmentation, height, width)
        counts = segmentation["counts"]
        return {"size": [height, width], "counts": counts.encode() if isinstance(counts, str)
                else counts}  # fmt: skip
    raise ValueError(
        f"{where}: expected polygons or an RLE dict with 'size' and 'counts', got "
        f"{type(segmentation).__name__}"
    )


def degenerate_polygons(segmentation) -> int:
    """How many polygons of a COCO segmentation have fewer than 3 points (0 for an RLE)."""
    if not isinstance(segmentation, list):
        return 0
    return sum(1 for p in segmentation if not (isinstance(p, list) and len(p) >= 6
                                               and len(p) % 2 == 0))  # fmt: skip


def merge_rles(rles: list[dict]) -> dict | None:
    """The union of ``rles`` (None when there are none)."""
    if not rles:
        return None
    return mask_utils.merge(rles) if len(rles) > 1 else rles[0]


def rasterize(rles: list[dict], height: int, width: int, device=None) -> Tensor:
    """RLEs -> uint8 masks [N, height, width] (0/1) on ``device``."""
    if not rles:
        return torch.zeros((0, height, width), dtype=torch.uint8, device=device)
    decoded = mask_utils.decode(rles)  # [H, W, N], Fortran order
    return torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1))).to(device)


def rasterize_targets(targets: list[dict], device=None) -> None:
    """Replace each target's ``masks_rle`` (and ``crowd_rle``) by ``masks`` uint8 [N, H, W]
    (and ``crowd`` [H, W], zeros without crowd regions) at its ``orig_size``, in place."""
    for t in targets:
        if "masks_rle" not in t:
            continue
        h, w = t["orig_size"]
        t["masks"] = rasterize(t.pop("masks_rle"), h, w, device)
        crowd = t.pop("crowd_rle", None)
        t["crowd"] = (rasterize([crowd], h, w, device)[0] if crowd is not None
                      else torch.zeros((h, w), dtype=torch.uint8, device=device))  # fmt: skip


def encode_masks(masks: Tensor) -> list[dict]:
    """Binary masks [N, H, W] (bool, or probabilities thresholded at 0.5) -> N compressed COCO
    RLEs ``{"size": [H, W], "counts": str}`` (JSON-ready, what a COCO results file holds)."""
    if masks.dim() != 3:
        raise ValueError(f"masks: expected [N, H, W], got shape {list(masks.shape)}")
    if not len(masks):
        return []
    binary = masks if masks.dtype == torch.bool else masks > 0.5
    array = np.asfortranarray(binary.detach().cpu().numpy().astype(np.uint8).transpose(1, 2, 0))
    rles = mask_utils.encode(array)
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()} for r in rles]
