"""Measure the selected components at every configured setting and build a results run."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from visdet.bench.components import COMPONENTS, Case, Setting, select
from visdet.bench.measure import count_flops, peak_memory_mb, time_ms

log = logging.getLogger(__name__)


def settings_for(
    axis: str,
    batch_sizes: Sequence[int],
    image_sizes: Sequence[int],
    box_counts: Sequence[int],
    roi_counts: Sequence[int],
    device: str,
) -> list[Setting]:
    rois = roi_counts[0]
    if axis == "image":
        return [
            Setting(batch_size=b, image_size=s, rois=rois, device=device)
            for b in batch_sizes
            for s in image_sizes
        ]
    if axis == "boxes":
        return [Setting(boxes=n, device=device) for n in box_counts]
    return [Setting(rois=n, image_size=image_sizes[0], device=device) for n in roi_counts]


def case_name(axis: str, s: Setting) -> str:
    if axis == "image":
        return f"b{s.batch_size}_{s.image_size}px"
    return f"n{s.boxes}" if axis == "boxes" else f"n{s.rois}"


def measure_case(case: Case, repeats: int, warmup: int, device: str, flops: bool) -> dict:
    """Parameter count, FLOPs, forward and forward+backward time, peak memory of a case."""
    params = sum(p.numel() for p in case.module.parameters()) if case.module is not None else 0

    def forward():
        with torch.no_grad():
            return case.forward()

    def forward_backward():
        if case.module is not None:
            case.module.zero_grad(set_to_none=True)
        case.loss().backward()

    n_flops = count_flops(case.forward) if flops else None  # (grad mode on: FlopCounterMode
    # tracks modules through autograd hooks)
    forward_stats = time_ms(forward, repeats, warmup, device)
    fb_stats = time_ms(forward_backward, repeats, warmup, device) if case.loss else None
    memory, kind = peak_memory_mb(forward_backward if case.loss else forward, device)
    images_per_s = None
    if case.images:
        images_per_s = case.images / (forward_stats["median"] / 1000)
    return {
        "params": params,
        "flops": n_flops,
        "macs": None if n_flops is None else n_flops // 2,
        "forward_ms": forward_stats,
        "forward_backward_ms": fb_stats,
        "peak_memory_mb": memory,
        "memory_kind": kind,
        "throughput": None if images_per_s is None else {"images_per_s": images_per_s},
    }


def run_components(
    components: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 2),
    image_sizes: Sequence[int] = (64,),
    box_counts: Sequence[int] = (1000,),
    roi_counts: Sequence[int] = (256,),
    repeats: int = 5,
    warmup: int = 1,
    flops: bool = True,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict]:
    """One result dict (schema fields) per component and setting."""
    for name, values in (
        ("batch_sizes", batch_sizes), ("image_sizes", image_sizes),
        ("box_counts", box_counts), ("roi_counts", roi_counts),
    ):  # fmt: skip
        if not values or min(values) < 1:
            raise ValueError(
                f"bench.{name} must be a non-empty list of positive ints, got {values}"
            )
    names = select(list(components or []), list(groups or []))
    jobs = []
    for name in names:
        group, impl, build, axis = COMPONENTS[name]
        for s in settings_for(axis, batch_sizes, image_sizes, box_counts, roi_counts, device):
            jobs.append((name, group, impl, build, axis, s))
    results = []
    for name, group, impl, build, axis, s in tqdm(jobs, desc="benchmark", disable=not progress):
        torch.manual_seed(0)
        case = build(s)
        measured = measure_case(case, repeats, warmup, device, flops)
        results.append(
            {
                "component": name.split("[")[0],
                "group": group,
                "impl": impl,
                "case": case_name(axis, s),
                "batch_size": case.batch_size,
                "input": case.input,
                **measured,
                "extra": {},
            }
        )
    return results
