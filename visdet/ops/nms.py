"""Greedy non-maximum suppression in plain PyTorch, exact to torchvision's semantics.

Boxes are sorted by score (descending, stable). A box is suppressed when its IoU with an
already kept, higher-scoring box is strictly greater than ``iou_threshold``.

The implementation works on score-sorted blocks of ``block`` boxes. For each block it
(1) resolves greedy NMS inside the block by a fixed-point iteration over the block's
suppression matrix (exactly the sequential result, usually in 1-3 rounds), then (2) removes
every later box that a kept box of the block suppresses, so suppressed boxes never cost
anything again. All pairwise work is vectorised; the Python loop runs once per block.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from visdet.ops._checks import check_boxes, check_floating, check_scores, compute_dtype

_BLOCK = 256
_CHUNK_ELEMENTS = 1 << 18
# pair tests that cost about as much as one extra per-category call (measured on CPU)
_PAIRS_PER_CALL = 70_000


def _threshold_below(iou_threshold: float, dtype: torch.dtype) -> float:
    """Largest value t of ``dtype`` with t <= iou_threshold.

    torchvision compares a float32 IoU with a float64 threshold. For a float32 IoU ``x``,
    ``x > iou_threshold`` holds exactly when ``x > t``, so comparing in float32 against ``t``
    gives the same decisions without upcasting.
    """
    if dtype == torch.float64:
        return float(iou_threshold)
    t = torch.tensor(iou_threshold, dtype=torch.float32)
    if t.item() > iou_threshold:
        t = torch.nextafter(t, torch.tensor(-math.inf))
    return t.item()


def _suppression(
    x1: Tensor,
    y1: Tensor,
    x2: Tensor,
    y2: Tensor,
    area: Tensor,
    ox1: Tensor,
    oy1: Tensor,
    ox2: Tensor,
    oy2: Tensor,
    oarea: Tensor,
    threshold: float,
) -> Tensor:
    """[K] boxes against [M] other boxes -> bool [K, M]: IoU > threshold."""
    w = torch.minimum(x2[:, None], ox2[None, :])
    w.sub_(torch.maximum(x1[:, None], ox1[None, :])).clamp_(min=0)
    h = torch.minimum(y2[:, None], oy2[None, :])
    h.sub_(torch.maximum(y1[:, None], oy1[None, :])).clamp_(min=0)
    inter = w.mul_(h)
    union = torch.add(area[:, None], oarea[None, :]).sub_(inter)
    return inter.div_(union).gt_(threshold).bool()


def _greedy_within(sup: Tensor) -> Tensor:
    """Greedy keep mask for a block whose strict upper triangle ``sup[i, j]`` (i < j) says
    that box i suppresses box j. Iterates keep = not any(keep[i] and sup[i, j]) to its fixed
    point, which is the sequential greedy result."""
    n = sup.shape[0]
    sup = sup.triu(diagonal=1)
    if not bool(sup.any()):
        return torch.ones(n, dtype=torch.bool, device=sup.device)
    supf = sup.to(torch.float32)
    keep = torch.ones(n, dtype=torch.bool, device=sup.device)
    for _ in range(n):
        new_keep = (keep.to(torch.float32) @ supf) == 0
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return keep


def _not_suppressed_by(
    kept: tuple[Tensor, ...],
    others: tuple[Tensor, ...],
    groups: tuple[Tensor, Tensor] | None,
    threshold: float,
) -> Tensor:
    """bool [M]: which of the M ``others`` no ``kept`` box suppresses. Columns are processed
    in chunks so the [K, chunk] temporaries stay cache-sized."""
    m = others[0].shape[0]
    chunk = max(1024, _CHUNK_ELEMENTS // max(1, kept[0].shape[0]))
    alive = torch.ones(m, dtype=torch.bool, device=others[0].device)
    if kept[0].numel() == 0:
        return alive
    for start in range(0, m, chunk):
        cols = slice(start, start + chunk)
        sup = _suppression(*kept, *(t[cols] for t in others), threshold)
        if groups is not None:
            sup &= groups[0][:, None] == groups[1][None, cols]
        alive[cols] = ~sup.any(0)
    return alive


def _nms_sorted(boxes: Tensor, groups: Tensor | None, threshold: float, block: int) -> Tensor:
    """Greedy NMS over boxes already sorted by decreasing score; returns kept positions.

    ``groups`` (optional, [N] int) restricts suppression to boxes of the same group.
    """
    n = boxes.shape[0]
    device = boxes.device
    x1, y1, x2, y2 = boxes.unbind(1)
    x1, y1, x2, y2 = x1.contiguous(), y1.contiguous(), x2.contiguous(), y2.contiguous()
    area = (x2 - x1) * (y2 - y1)
    pos = torch.arange(n, device=device)
    kept: list[Tensor] = []
    while pos.numel() > 0:
        b = min(block, pos.numel())
        bx1, by1, bx2, by2, ba = x1[:b], y1[:b], x2[:b], y2[:b], area[:b]
        sup = _suppression(bx1, by1, bx2, by2, ba, bx1, by1, bx2, by2, ba, threshold)
        if groups is not None:
            sup &= groups[:b, None] == groups[None, :b]
        keep_b = _greedy_within(sup)
        kept.append(pos[:b][keep_b])
        if pos.numel() == b:
            break
        rest = slice(b, None)
        k = keep_b.nonzero().squeeze(1)
        alive = _not_suppressed_by(
            (bx1[k], by1[k], bx2[k], by2[k], ba[k]),
            (x1[rest], y1[rest], x2[rest], y2[rest], area[rest]),
            None if groups is None else (groups[:b][k], groups[rest]),
            threshold,
        )
        pos = pos[rest][alive]
        x1, y1, x2, y2, area = (t[rest][alive] for t in (x1, y1, x2, y2, area))
        if groups is not None:
            groups = groups[rest][alive]
    return torch.cat(kept) if kept else pos


def descending_order(scores: Tensor) -> Tensor:
    """Indices that sort ``scores`` [N] in decreasing order, ties in index order (a stable
    sort). ONNX has no stable sort; its TopK is specified to break ties by the lower index,
    so an ONNX export takes a TopK of all N, the same order."""
    if torch.onnx.is_in_onnx_export():
        return torch.topk(scores, scores.shape[0], sorted=True).indices
    return torch.sort(scores, descending=True, stable=True).indices


def _prepare(boxes: Tensor, scores: Tensor, iou_threshold: float) -> tuple[Tensor, Tensor, float]:
    check_boxes(boxes)
    check_floating(boxes, "boxes")
    check_scores(scores, boxes.shape[0])
    if not isinstance(iou_threshold, (int, float)) or math.isnan(iou_threshold):
        raise TypeError(f"iou_threshold must be a number, got {iou_threshold!r}")
    dtype = compute_dtype(boxes)
    order = descending_order(scores)
    return boxes.to(dtype)[order], order, _threshold_below(float(iou_threshold), dtype)


# Implementations of the sorted-boxes kernel, compared by ``visdet bench``:
# "blocked" (the default) resolves blocks of 256 boxes; "single_block" builds the whole
# suppression matrix at once (fewer Python steps, O(N^2) memory: a candidate for GPUs).
NMS_IMPLEMENTATIONS = ("blocked", "single_block")
BATCHED_NMS_STRATEGIES = ("auto", "mask", "per_category")


def _block_size(implementation: str, n: int) -> int:
    if implementation == "blocked":
        return _BLOCK
    if implementation == "single_block":
        return max(n, 1)
    raise ValueError(f"implementation must be one of {NMS_IMPLEMENTATIONS}, got {implementation!r}")


def nms(
    boxes: Tensor, scores: Tensor, iou_threshold: float, *, implementation: str = "blocked"
) -> Tensor:
    """Greedy NMS.

    Args:
        boxes: [N, 4] xyxy, floating point (fp16/bf16 are computed in float32).
        scores: [N] scores.
        iou_threshold: boxes with IoU strictly greater than this are suppressed.
        implementation: one of ``NMS_IMPLEMENTATIONS`` (same results, different speed).

    Returns:
        int64 [K] indices of kept boxes, in decreasing score order.
    """
    if torch.compiler.is_exporting():  # no data-dependent control flow in an exported graph
        from visdet.ops.nms_graph import graph_nms

        return graph_nms(boxes, scores, iou_threshold)
    block = _block_size(implementation, boxes.shape[0] if boxes.dim() else 0)
    sorted_boxes, order, threshold = _prepare(boxes, scores, iou_threshold)
    if sorted_boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    return order[_nms_sorted(sorted_boxes, None, threshold, block)]


def batched_nms(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float, *, strategy: str = "auto"
) -> Tensor:
    """NMS independently per category ``idxs``.

    Boxes of different categories never suppress each other. Coordinates are used as they
    are (no per-category coordinate offset), so the result is exact at any coordinate scale.

    Args:
        boxes: [N, 4] xyxy. scores: [N]. idxs: [N] integer category of each box.
        iou_threshold: IoU above which a box is suppressed by a same-category box.
        strategy: ``"mask"`` (one pass with a same-category mask), ``"per_category"`` (one
            NMS per category) or ``"auto"`` (whichever a cost model says is cheaper).

    Returns:
        int64 [K] indices of kept boxes, in decreasing score order.
    """
    if strategy not in BATCHED_NMS_STRATEGIES:
        raise ValueError(f"strategy must be one of {BATCHED_NMS_STRATEGIES}, got {strategy!r}")
    check_boxes(boxes)
    if not isinstance(idxs, Tensor) or idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"idxs must be a Tensor[{boxes.shape[0]}] (one category per box), "
            f"got {list(getattr(idxs, 'shape', []))}"
        )
    if idxs.is_floating_point():
        raise TypeError(f"idxs must be an integer tensor, got dtype {idxs.dtype}")
    if torch.compiler.is_exporting():  # no data-dependent control flow in an exported graph
        from visdet.ops.nms_graph import graph_batched_nms

        return graph_batched_nms(boxes, scores, idxs, iou_threshold)
    sorted_boxes, order, threshold = _prepare(boxes, scores, iou_threshold)
    n = sorted_boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    groups = idxs[order]
    categories, counts = torch.unique(groups, return_counts=True)
    if categories.numel() == 1:
        return order[_nms_sorted(sorted_boxes, None, threshold, _BLOCK)]
    # One pass over all boxes with a same-category mask costs ~n^2 pair tests; one NMS per
    # category costs sum(n_c^2) pair tests plus a fixed overhead per call. Pick the cheaper.
    pairs_saved = n * n - int((counts * counts).sum())
    use_mask = pairs_saved <= categories.numel() * _PAIRS_PER_CALL
    if strategy == "mask" or (strategy == "auto" and use_mask):
        return order[_nms_sorted(sorted_boxes, groups, threshold, _BLOCK)]
    kept = []
    for cat in categories:
        pos = torch.nonzero(groups == cat).squeeze(1)
        kept.append(pos[_nms_sorted(sorted_boxes[pos], None, threshold, _BLOCK)])
    # positions index the score-sorted order, so ascending positions = decreasing score
    return order[torch.cat(kept).sort().values]
