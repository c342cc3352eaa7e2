"""RoIAlign (He et al., Mask R-CNN) in plain PyTorch with torchvision's exact semantics.

Each output bin averages ``grid_h x grid_w`` bilinear samples taken at
``start + bin * (i + (j + 0.5) / grid)``. Sampling is separable: a sample's four bilinear
weights are products of a row weight and a column weight, so each RoI needs only its
``2 * pooled_h * grid_h`` rows and ``2 * pooled_w * grid_w`` columns. Rows of the
channels-last feature map are gathered for a chunk of RoIs at a time (cache-sized), weighted
and summed; the backward pass scatters the weighted gradient back with ``index_add_``.

Border behaviour (torchvision): a sample with y < -1 or y > H (x likewise) contributes 0;
coordinates in [-1, 0] are clamped to 0; at the last row/column there is no interpolation
beyond the edge.
"""

from __future__ import annotations

import torch
from torch import Tensor

_CHUNK_ELEMENTS = 1 << 21  # gathered floats per chunk (8 MB in float32)


def _as_pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def rois_from_boxes(boxes: Tensor | list[Tensor]) -> Tensor:
    """Boxes as Tensor[K, 5] (batch index, x1, y1, x2, y2) from either accepted format."""
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                "boxes must be a Tensor[K, 5] (batch index, x1, y1, x2, y2) or a list of "
                f"Tensor[L, 4], got a tensor of shape {list(boxes.shape)}"
            )
        return boxes
    if not isinstance(boxes, (list, tuple)) or not all(isinstance(b, Tensor) for b in boxes):
        raise TypeError(
            f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes)}"
        )
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}] must have shape [L, 4], got {list(b.shape)}")
    if len(boxes) == 0:
        return torch.zeros(0, 5)
    cat = torch.cat(list(boxes), dim=0)
    idx = torch.cat(
        [
            torch.full((len(b), 1), i, dtype=cat.dtype, device=cat.device)
            for i, b in enumerate(boxes)
        ]
    )
    return torch.cat([idx, cat], dim=1)


def _axis_samples(
    start: Tensor, size: Tensor, pooled: int, grid: int, limit: int
) -> tuple[Tensor, Tensor]:
    """Sample positions along one axis for a group of RoIs sharing ``grid``.

    Returns (index [R, pooled, grid, 2] long, weight [R, pooled, grid, 2]): the two neighbouring
    pixel indices of each sample and their bilinear weights (zero outside [-1, limit])."""
    bin_size = size / pooled
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)
    g = (torch.arange(grid, device=start.device, dtype=start.dtype) + 0.5) / grid
    pos = start[:, None, None] + bin_size[:, None, None] * (p[None, :, None] + g[None, None, :])
    inside = (pos >= -1.0) & (pos <= limit)
    pos = pos.clamp(min=0.0)
    low = pos.floor().long()
    at_edge = low >= limit - 1
    low = torch.where(at_edge, torch.full_like(low, limit - 1), low)
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(pos), pos - low.to(pos.dtype))
    w = torch.stack((1.0 - frac, frac), dim=-1) * inside[..., None].to(pos.dtype)
    return torch.stack((low, high), dim=-1), w


def weighted_gather(flat: Tensor, index: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
    """out[k, p, q, :] = sum_ab wy[k, p, a] * wx[k, q, b] * flat[index[k, p, a, q, b]]:
    flat [P, C]; index [R, ph, A, pw, B]; wy [R, ph, A]; wx [R, pw, B] -> [R, ph, pw, C]."""
    r, ph, a, pw, b = index.shape
    g = flat.index_select(0, index.reshape(-1)).view(r, ph, a, pw, b, flat.shape[1])
    g = (g * wx[:, None, None, :, :, None]).sum(4)  # [R, ph, A, pw, C]
    return (g * wy[:, :, :, None, None]).sum(2)


class _RoIAlignGather(torch.autograd.Function):
    """Weighted gather of channels-last rows: out[k, p, q, :] = sum_ab Wy*Wx*feat[idx]."""

    @staticmethod
    def forward(ctx, flat: Tensor, index: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
        # flat [P, C]; index [R, ph, A, pw, B]; wy [R, ph, A]; wx [R, pw, B]
        ctx.save_for_backward(index, wy, wx)
        ctx.num_rows = flat.shape[0]
        r, ph, a, pw, b = index.shape
        c = flat.shape[1]
        out = flat.new_empty(r, ph, pw, c)
        step = max(1, _CHUNK_ELEMENTS // max(1, ph * a * pw * b * c))
        for s in range(0, r, step):
            e = min(r, s + step)
            out[s:e] = weighted_gather(flat, index[s:e], wy[s:e], wx[s:e])
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        index, wy, wx = ctx.saved_tensors
        r, ph, a, pw, b = index.shape
        c = grad_out.shape[-1]
        grad_flat = grad_out.new_zeros(ctx.num_rows, c)
        step = max(1, _CHUNK_ELEMENTS // max(1, ph * a * pw * b * c))
        for s in range(0, r, step):
            e = min(r, s + step)
            g = grad_out[s:e, :, None, :, :] * wy[s:e, :, :, None, None]  # [k, ph, A, pw, C]
            g = g[:, :, :, :, None, :] * wx[s:e, None, None, :, :, None]  # [k, ph, A, pw, B, C]
            grad_flat.index_add_(0, index[s:e].reshape(-1), g.reshape(-1, c))
        return grad_flat, None, None, None


def roi_align(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign pooling.

    Args:
        input: [N, C, H, W] feature map (floating point).
        boxes: Tensor[K, 5] (batch index, x1, y1, x2, y2) or a list of N Tensor[L_i, 4],
            in input-image coordinates.
        output_size: (pooled_h, pooled_w) or an int for both.
        spatial_scale: factor from box coordinates to feature-map coordinates.
        sampling_ratio: samples per bin along each axis; <= 0 means ceil(roi_size / pooled)
            chosen per RoI.
        aligned: shift boxes by -0.5 pixel after scaling (pixel-centre alignment); when False
            RoI width and height are clamped to at least 1.

    Returns:
        [K, C, pooled_h, pooled_w], differentiable with respect to ``input``.
    """
    if not isinstance(input, Tensor) or input.dim() != 4:
        raise ValueError(
            f"input must be a Tensor[N, C, H, W], got {getattr(input, 'shape', input)}"
        )
    if not input.is_floating_point():
        raise TypeError(f"input must be floating point, got dtype {input.dtype}")
    ph, pw = _as_pair(output_size, "output_size")
    rois = rois_from_boxes(boxes).to(device=input.device)
    n, c, h, w = input.shape
    k = rois.shape[0]
    out_dtype = input.dtype
    work_dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    rois = rois.to(work_dtype)
    batch = rois[:, 0].long()
    exporting = torch.compiler.is_exporting()  # an exported graph has no data-dependent branch
    if not exporting and k and (int(batch.min()) < 0 or int(batch.max()) >= n):
        raise ValueError(
            f"boxes batch indices must be in [0, {n - 1}], got "
            f"[{int(batch.min())}, {int(batch.max())}]"
        )

    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x1
    roi_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.long, device=input.device)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / ph).long().clamp(min=0)
        grid_w = torch.ceil(roi_w / pw).long().clamp(min=0)

    flat = input.to(work_dtype).permute(0, 2, 3, 1).reshape(n * h * w, c)
    if sampling_ratio > 0:  # one sampling grid for every RoI: no grouping
        boxes_axes = (batch, x1, y1, roi_w, roi_h)
        out = _pool(flat, boxes_axes, (ph, pw), (sampling_ratio, sampling_ratio), (h, w))
        return out.permute(0, 3, 1, 2).to(out_dtype)
    if k == 0:  # still an autograd node of ``input``, so backward gives a zero gradient
        empty = torch.zeros(0, ph, 0, pw, 0, dtype=torch.long, device=flat.device)
        out = _RoIAlignGather.apply(flat, empty, flat.new_zeros(0, ph, 0), flat.new_zeros(0, pw, 0))
        return out.permute(0, 3, 1, 2).to(out_dtype)
    out = flat.new_zeros(k, ph, pw, c)
    pairs = torch.stack((grid_h, grid_w), 1)
    for gh, gw in torch.unique(pairs, dim=0).tolist():
        sel = torch.nonzero((grid_h == gh) & (grid_w == gw)).squeeze(1)
        boxes_axes = (batch[sel], x1[sel], y1[sel], roi_w[sel], roi_h[sel])
        out[sel] = _pool(flat, boxes_axes, (ph, pw), (gh, gw), (h, w))
    return out.permute(0, 3, 1, 2).to(out_dtype)


def _pool(
    flat: Tensor,
    boxes_axes: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    pooled: tuple[int, int],
    grid: tuple[int, int],
    size: tuple[int, int],
) -> Tensor:
    """[R, ph, pw, C] pooled values of R RoIs that share one ``grid`` (gh, gw) of samples
    per bin; ``boxes_axes`` = (batch index, x1, y1, width, height), each [R], in feature-map
    coordinates; ``flat`` = the feature map as [N * H * W, C]; ``size`` = (H, W)."""
    batch, x1, y1, roi_w, roi_h = boxes_axes
    (ph, pw), (gh, gw), (h, w) = pooled, grid, size
    iy, wy = _axis_samples(y1, roi_h, ph, gh, h)
    ix, wx = _axis_samples(x1, roi_w, pw, gw, w)
    r = batch.shape[0]
    base = (batch * (h * w)).view(r, 1, 1, 1, 1)
    index = base + iy.view(r, ph, 2 * gh, 1, 1) * w + ix.view(r, 1, 1, pw, 2 * gw)
    wy = wy.reshape(r, ph, 2 * gh) / max(1, gh * gw)  # an empty grid gives 0
    wx = wx.reshape(r, pw, 2 * gw)
    if torch.compiler.is_exporting():  # inference graph: one gather, no autograd Function
        return weighted_gather(flat, index, wy, wx)
    return _RoIAlignGather.apply(flat, index, wy, wx)


__all__ = ["roi_align", "rois_from_boxes"]
