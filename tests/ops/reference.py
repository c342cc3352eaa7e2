"""Independent brute-force references for visdet.ops, as plain Python loops over floats.

Nothing here imports visdet: each function restates the semantics of DESIGN.md section 6
(torchvision's) directly, slowly and obviously. Inputs are nested lists of Python floats
(use ``tensor.tolist()``); outputs are lists.
"""

from __future__ import annotations

import math


def area(b):
    return (b[2] - b[0]) * (b[3] - b[1])


def inter_union(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter, area(a) + area(b) - inter


def _div(num, den):
    """num / den with IEEE semantics (0/0 = nan, x/0 = +-inf) instead of ZeroDivisionError."""
    if den != 0:
        return num / den
    return math.nan if num == 0 else math.copysign(math.inf, num)


def iou(a, b):
    inter, union = inter_union(a, b)
    return _div(inter, union)


def giou(a, b):
    inter, union = inter_union(a, b)
    cw = max(0.0, max(a[2], b[2]) - min(a[0], b[0]))
    ch = max(0.0, max(a[3], b[3]) - min(a[1], b[1]))
    enclosing = cw * ch
    return _div(inter, union) - _div(enclosing - union, enclosing)


def pairwise(fn, boxes1, boxes2):
    return [[fn(a, b) for b in boxes2] for a in boxes1]


def suppresses(a, b, threshold):
    """True when a kept box ``a`` suppresses ``b``: IoU strictly above the threshold.
    A union <= 0 (degenerate boxes) or a nan IoU never suppresses."""
    inter, union = inter_union(a, b)
    if union <= 0:
        return False
    value = inter / union
    return value == value and value > threshold


def score_order(scores):
    """Indices by decreasing score; equal scores keep their input order (stable)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def nms(boxes, scores, threshold):
    keep = []
    for i in score_order(scores):
        if not any(suppresses(boxes[k], boxes[i], threshold) for k in keep):
            keep.append(i)
    return keep


def batched_nms(boxes, scores, idxs, threshold):
    """NMS run separately per category, merged back in decreasing score order."""
    keep = []
    for cat in sorted(set(idxs)):
        members = [i for i in range(len(boxes)) if idxs[i] == cat]
        kept = nms([boxes[i] for i in members], [scores[i] for i in members], threshold)
        keep.extend(members[j] for j in kept)
    position = {i: r for r, i in enumerate(score_order(scores))}
    return sorted(keep, key=lambda i: position[i])


def _bilinear(plane, height, width, y, x):
    """torchvision's bilinear_interpolate for one sample of one channel plane."""
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * plane[y_low][x_low]
        + hy * lx * plane[y_low][x_high]
        + ly * hx * plane[y_high][x_low]
        + ly * lx * plane[y_high][x_high]
    )


def roi_align(feature, rois, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned):
    """feature: nested list [N][C][H][W]; rois: list of (batch, x1, y1, x2, y2).
    Returns nested list [K][C][pooled_h][pooled_w]."""
    height, width = len(feature[0][0]), len(feature[0][0][0])
    offset = 0.5 if aligned else 0.0
    out = []
    for batch, bx1, by1, bx2, by2 in rois:
        x1 = bx1 * spatial_scale - offset
        y1 = by1 * spatial_scale - offset
        roi_w = bx2 * spatial_scale - offset - x1
        roi_h = by2 * spatial_scale - offset - y1
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / pooled_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pooled_w)
        count = max(grid_h * grid_w, 1)
        channels = []
        for plane in feature[int(batch)]:
            rows = []
            for p in range(pooled_h):
                row = []
                for q in range(pooled_w):
                    total = 0.0
                    for i in range(grid_h):
                        y = y1 + bin_h * (p + (i + 0.5) / grid_h)
                        for j in range(grid_w):
                            x = x1 + bin_w * (q + (j + 0.5) / grid_w)
                            total += _bilinear(plane, height, width, y, x)
                    row.append(total / count)
                rows.append(row)
            channels.append(rows)
        out.append(channels)
    return out


def cell_anchors(sizes, ratios):
    """Zero-centred anchors, ratio slowest and size fastest; round half to even like torch."""
    out = []
    for r in ratios:
        for s in sizes:
            w, h = s / math.sqrt(r), s * math.sqrt(r)
            out.append([float(round(v / 2)) for v in (-w, -h, w, h)])
    return out


def grid_anchors(sizes, ratios, grid_h, grid_w, stride_h, stride_w):
    """All anchors of one level: locations row-major (y, then x), cell anchors inside."""
    base = cell_anchors(sizes, ratios)
    out = []
    for y in range(grid_h):
        for x in range(grid_w):
            sx, sy = x * stride_w, y * stride_h
            out.extend([a[0] + sx, a[1] + sy, a[2] + sx, a[3] + sy] for a in base)
    return out
