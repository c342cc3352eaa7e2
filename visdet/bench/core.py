"""The core benchmark (``visdet bench preset=core``, ``make bench``): nms, roi_align and
Faster R-CNN ResNet-FPN training and inference at the sizes of torchvision's reference
figures, every visdet result with a reference and a ratio (visdet/bench/reference.py).

When torchvision imports (never a dependency: run from an environment that has it), each
case is also timed with torchvision's op or detector in the same run, on the same inputs
(the detector with the same weights, converted by key), as an ``impl: torchvision`` result,
and the ratio compares with it; otherwise with the stored figure. The cases:

- ``core/nms``: ``n`` boxes, top-left corners uniform in a 1000 x 1000 canvas, sides uniform
  in [1, 250], uniform scores, IoU 0.7; forward.
- ``core/roi_align``: RoIs on a random [B, C, H, W] map (corners in the first 90 %, sides
  2 .. 0.3 W + 2), 7 x 7 bins, sampling ratio 2, aligned, scale 1; forward + backward of the
  sum (the input's gradient).
- ``core/train_r<depth>_fpn``, ``core/infer_r<depth>_fpn``:
  ``faster_rcnn_resnet_fpn(num_classes=90, depth, min_size=size, max_size=2 * size)``
  (torchvision's defaults), B images of size x size with 5 random boxes each. Training:
  forward + backward of the summed losses (no optimizer step); inference: eval-mode forward
  with post-processing under ``no_grad``. ``extra.parts_ms``: the forward time of backbone,
  neck, rpn and roi_heads within those calls (hooks; backward, transform and glue are the
  rest). Inference records ``extra.detections``: the detections per image (random weights
  give confident scores, so post-processing and per-class NMS do real work). A training
  step records its FLOPs (forward + backward, ``torch.utils.flop_counter``) and
  ``extra.mfu``: FLOPs / median time / the machine's matmul peak.
- ``core/matmul_peak``: a float32 ``n x n`` matmul, median of ``repeats``: the machine's
  measured peak (``extra.gflop_per_s``) that MFU divides by.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from visdet.bench.measure import PartTimes, count_flops, summarize, time_ms
from visdet.bench.reference import add_references
from visdet.bench.schema import new_result
from visdet.models import faster_rcnn_resnet_fpn
from visdet.ops import nms, roi_align

try:  # optional: timed in the same run when importable; never a dependency
    import torchvision  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - any import failure means "not available"
    torchvision = None

NUM_CLASSES = 90  # object classes (COCO's 90 ids; torchvision counts 91 with the background)
DETECTOR_PARTS = ("backbone", "neck", "rpn", "roi_heads")
# the keys of a preset's core section: core_specs' sizes and run_core's repeats
CORE_KEYS = (
    "nms_boxes", "roi_align_rois", "roi_align_input", "detector_depths", "detector_sizes",
    "detector_batch_size", "repeats", "detector_repeats", "matmul_size",
)  # fmt: skip


@dataclass
class CoreCase:
    input: str  # what the inputs were
    batch_size: int
    metric: str  # the timing it fills: "forward_ms" or "forward_backward_ms"
    calls: dict[str, Callable[[], object]]  # implementation -> one timed call
    models: dict[str, nn.Module] = field(default_factory=dict)  # implementation -> its model
    images: int = 0  # images per call (for images/s); 0 = not image-based
    extra: dict = field(default_factory=dict)


def matmul_case(n: int, device: str) -> CoreCase:
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=gen).to(device)
    b = torch.rand(n, n, generator=gen).to(device)
    case = CoreCase(f"{n}x{n} @ {n}x{n} float32", 1, "forward_ms", {"visdet": lambda: a @ b})
    case.extra["flops"] = 2 * n**3
    return case


def random_boxes(n: int, gen: torch.Generator, canvas: float = 1000.0) -> torch.Tensor:
    """[n, 4] xyxy: corners uniform in a canvas x canvas image, sides in [1, canvas / 4]."""
    xy = torch.rand(n, 2, generator=gen) * canvas
    wh = torch.rand(n, 2, generator=gen) * (canvas / 4 - 1) + 1
    return torch.cat([xy, xy + wh], 1)


def nms_case(n: int, device: str) -> CoreCase:
    gen = torch.Generator().manual_seed(0)
    boxes = random_boxes(n, gen).to(device)
    scores = torch.rand(n, generator=gen).to(device)
    kept = nms(boxes, scores, 0.7)
    calls = {"visdet": lambda: nms(boxes, scores, 0.7)}
    extra: dict = {"kept": len(kept)}
    if torchvision is not None:
        calls["torchvision"] = lambda: torchvision.ops.nms(boxes, scores, 0.7)
        extra["equal_to_torchvision"] = torch.equal(calls["torchvision"](), kept)
    return CoreCase(f"{n} random boxes, IoU 0.7", 1, "forward_ms", calls, extra=extra)


def roi_align_case(rois: int, shape: Sequence[int], device: str) -> CoreCase:
    b, c, h, w = shape
    gen = torch.Generator().manual_seed(0)
    feature = torch.rand(b, c, h, w, generator=gen).to(device).requires_grad_(True)
    xy = torch.rand(rois, 2, generator=gen) * torch.tensor([w, h]) * 0.9
    wh = torch.rand(rois, 2, generator=gen) * w * 0.3 + 2
    index = torch.randint(0, b, (rois, 1), generator=gen).float()
    boxes = torch.cat([index, xy, xy + wh], 1).to(device)

    def step(op: Callable) -> None:
        feature.grad = None
        op(feature, boxes, 7, 1.0, 2, True).sum().backward()

    calls = {"visdet": lambda: step(roi_align)}
    if torchvision is not None:
        calls["torchvision"] = lambda: step(torchvision.ops.roi_align)
    input = f"{rois} RoIs on {b}x{c}x{h}x{w}, 7x7, sampling 2, aligned"
    return CoreCase(input, b, "forward_backward_ms", calls)


def _torchvision_twin(depth: int, size: int) -> nn.Module:
    """torchvision's Faster R-CNN with the same architecture and settings."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    backbone = resnet_fpn_backbone(
        backbone_name=f"resnet{depth}",
        weights=None,
        norm_layer=torchvision.ops.misc.FrozenBatchNorm2d,
        trainable_layers=3,
    )
    return FasterRCNN(backbone, num_classes=NUM_CLASSES + 1, min_size=size, max_size=2 * size)


def _parts(impl: str, model: nn.Module) -> dict[str, nn.Module]:
    if impl == "torchvision":
        return {
            "backbone": model.backbone.body,
            "neck": model.backbone.fpn,
            "rpn": model.rpn,
            "roi_heads": model.roi_heads,
        }
    return {n: getattr(model, n) for n in DETECTOR_PARTS if hasattr(model, n)}


def images_and_targets(batch_size: int, size: int, device: str = "cpu"):
    """A seeded synthetic batch: ``batch_size`` random images of ``size`` px, each with 5
    boxes (labels 1..NUM_CLASSES)."""
    gen = torch.Generator().manual_seed(0)
    images, targets = [], []
    for _ in range(batch_size):
        images.append(torch.rand(3, size, size, generator=gen).to(device))
        xy = torch.rand(5, 2, generator=gen) * size * 0.6
        wh = torch.rand(5, 2, generator=gen) * size * 0.3 + 16
        labels = torch.randint(1, NUM_CLASSES + 1, (5,), generator=gen)
        targets.append(
            {"boxes": torch.cat([xy, xy + wh], 1).to(device), "labels": labels.to(device)}
        )
    return images, targets


def detector_case(mode: str, depth: int, size: int, batch_size: int, device: str) -> CoreCase:
    torch.manual_seed(0)
    model = faster_rcnn_resnet_fpn(
        num_classes=NUM_CLASSES, depth=depth, min_size=size, max_size=2 * size
    )
    models = {"visdet": model}
    if torchvision is not None:
        from visdet.models.weights.convert.torchvision_faster_rcnn import (
            faster_rcnn_from_torchvision,
        )

        models["torchvision"] = twin = _torchvision_twin(depth, size)
        model.load_state_dict(faster_rcnn_from_torchvision(twin.state_dict()))
    images, targets = images_and_targets(batch_size, size, device)

    def train_step(m: nn.Module) -> None:
        m.zero_grad(set_to_none=True)
        sum(m(images, targets).values()).backward()

    def infer(m: nn.Module) -> object:
        with torch.no_grad():
            return m(images)

    calls = {}
    for impl, m in models.items():
        m.to(device).train(mode == "train")
        calls[impl] = functools.partial(train_step if mode == "train" else infer, m)
    metric = "forward_backward_ms" if mode == "train" else "forward_ms"
    input = f"{batch_size}x3x{size}x{size}"
    case = CoreCase(input, batch_size, metric, calls, models, images=batch_size)
    if mode == "train":
        case.extra["flops"] = count_flops(calls["visdet"])
    else:
        case.extra["detections"] = [len(d["boxes"]) for d in calls["visdet"]()]
    return case


def core_specs(
    nms_boxes: Sequence[int] = (1000, 2000, 6000),
    roi_align_rois: int = 512,
    roi_align_input: Sequence[int] = (2, 256, 200, 200),
    detector_depths: Sequence[int] = (50,),
    detector_sizes: Sequence[int] = (320, 512),
    detector_batch_size: int = 2,
    matmul_size: int = 2048,
    device: str = "cpu",
) -> list[tuple[str, str, Callable[[], CoreCase]]]:
    """(component, case, build) of every selected case, in run order; nothing is built."""
    specs = []
    if matmul_size:
        build = functools.partial(matmul_case, matmul_size, device)
        specs.append(("core/matmul_peak", f"n{matmul_size}", build))
    specs += [("core/nms", f"n{n}", functools.partial(nms_case, n, device)) for n in nms_boxes]
    if roi_align_rois:
        if len(roi_align_input) != 4:
            raise ValueError(f"roi_align_input must be [B, C, H, W], got {list(roi_align_input)}")
        shape = "x".join(str(d) for d in roi_align_input)
        build = functools.partial(roi_align_case, roi_align_rois, list(roi_align_input), device)
        specs.append(("core/roi_align", f"n{roi_align_rois}_{shape}", build))
    for depth in detector_depths:
        for size in detector_sizes:
            for mode in ("train", "infer"):
                build = functools.partial(
                    detector_case, mode, depth, size, detector_batch_size, device
                )
                specs.append(
                    (f"core/{mode}_r{depth}_fpn", f"b{detector_batch_size}_{size}px", build)
                )
    return specs


def interleaved_ms(
    calls: dict[str, Callable[[], object]], repeats: int, warmup: int, device: str
) -> dict[str, dict]:
    """Wall-time statistics of each call, timed in turns: every repeat runs each
    implementation once (the order reversed every other repeat), so a machine that slows
    down or speeds up during the run affects them alike and their ratio stays fair."""
    order = list(calls)
    times: dict[str, list[float]] = {impl: [] for impl in order}
    for impl in order:  # warm-up, untimed
        for _ in range(warmup):
            calls[impl]()
    for r in range(repeats):
        for impl in order if r % 2 == 0 else order[::-1]:
            times[impl].append(time_ms(calls[impl], 1, 0, device)["median"])
    return {impl: summarize(t) for impl, t in times.items()}


def measure_core_case(
    component: str, case_name: str, case: CoreCase, repeats: int, warmup: int, device: str
) -> list[dict]:
    """One result per implementation of ``case``, the implementations timed in turns."""
    timers, calls = {}, {}
    for impl, call in case.calls.items():
        model = case.models.get(impl)
        timers[impl] = PartTimes(_parts(impl, model) if model is not None else {}, device)
        calls[impl] = timers[impl].wrap(call)
    for timer in timers.values():
        timer.__enter__()
    try:
        all_stats = interleaved_ms(calls, repeats, warmup, device)
    finally:
        for timer in timers.values():
            timer.__exit__(None, None, None)
    results = []
    for impl, stats in all_stats.items():
        model, timer = case.models.get(impl), timers[impl]
        extra = dict(case.extra)
        flops = extra.pop("flops", None)
        if timer.parts:
            extra["parts_ms"] = timer.medians(repeats)
        throughput = None
        if case.images:
            throughput = {"images_per_s": case.images / (stats["median"] / 1000)}
        params = 0 if model is None else sum(p.numel() for p in model.parameters())
        fields = {case.metric: stats, "throughput": throughput, "extra": extra}
        if flops is not None:
            fields |= {"flops": flops, "macs": flops / 2}
        results.append(
            new_result(
                component, "core", impl, case_name, batch_size=case.batch_size,
                input=case.input, params=params, **fields,
            )
        )  # fmt: skip
    return results


def add_mfu(results: list[dict]) -> list[dict]:
    """``extra.gflop_per_s`` of the matmul-peak result and ``extra.mfu`` (FLOPs / median
    time / that peak) of every timed result with FLOPs; without a peak result nothing is
    added. Returns ``results``."""
    peak = None
    for r in results:
        if r["component"] == "core/matmul_peak":
            peak = r["flops"] / (r["forward_ms"]["median"] / 1000)
            r["extra"]["gflop_per_s"] = peak / 1e9
    if peak is None:
        return results
    for r in results:
        stats = r["forward_backward_ms"] or r["forward_ms"]
        if r["flops"] and stats and r["component"] != "core/matmul_peak":
            r["extra"]["mfu"] = r["flops"] / (stats["median"] / 1000) / peak
    return results


def run_core(
    repeats: int = 7,
    detector_repeats: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    progress: bool = True,
    **sizes,
) -> list[dict]:
    """Every case of ``core_specs(**sizes)``: results with their references."""
    if repeats < 1 or detector_repeats < 1:
        raise ValueError(f"core repeats must be >= 1, got {repeats}, {detector_repeats}")
    results = []
    specs = core_specs(device=device, **sizes)
    for component, case_name, build in tqdm(specs, desc="core benchmark", disable=not progress):
        case = build()
        n = detector_repeats if case.models else repeats
        results += measure_core_case(component, case_name, case, n, warmup, device)
    return add_mfu(add_references(results, device))
