"""The components ``visdet bench`` measures, by name (``group/name``).

A component builds a ``Case`` for one setting: the module (for the parameter count), a
``forward`` callable and, when it has gradients, a ``loss`` callable whose ``backward()``
is timed with it. Ops, losses, layers and necks are listed here (one function plus one line
in ``COMPONENTS``, docs/benchmarking.md); backbones and detector parts come from the
registered families (``visdet.models.families``): ``backbone/<name>`` for each of
``BENCH_BACKBONES`` and each family record's ``bench_components``.

Settings: image components use ``batch_size`` and ``image_size`` (inputs are images, or the
feature maps a ResNet-18 / FPN-128 produces for them); ops use ``boxes`` (nms) or ``rois``
(roi_align, the RoI extractor) instead of the batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visdet.models import FPN, FrozenBatchNorm2d
from visdet.models.detectors.family import BenchBuilder
from visdet.models.detectors.faster_rcnn_bench import random_rois
from visdet.models.families import BENCH_BACKBONES, DETECTOR_FAMILIES
from visdet.ops import (
    batched_nms,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    nms,
    roi_align,
    sigmoid_focal_loss,
)
from visdet.ops.nms import BATCHED_NMS_STRATEGIES, NMS_IMPLEMENTATIONS

try:  # optional: compared side by side when importable; never a dependency
    import torchvision.ops as tv_ops  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - any import failure means "not available"
    tv_ops = None

FPN_CHANNELS = 128
C_CHANNELS = (64, 128, 256, 512)  # ResNet-18 c2..c5
NUM_CLASSES = 4


@dataclass
class Setting:
    batch_size: int = 1
    image_size: int = 64
    boxes: int = 1000
    rois: int = 256
    device: str = "cpu"


@dataclass
class Case:
    forward: Callable[[], object]
    loss: Callable[[], Tensor] | None  # a forward that returns a scalar to backpropagate
    module: nn.Module | None
    input: str  # what the inputs were, e.g. "2x3x64x64"
    batch_size: int
    images: int = 0  # images per call (for images/s); 0 = not image-based


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mean_of(out) -> Tensor:
    """A scalar from any output (tensor, tuple, dict of tensors) to backpropagate."""
    if isinstance(out, Tensor):
        return out.float().mean()
    values = out.values() if isinstance(out, dict) else out
    return sum(_mean_of(v) for v in values if isinstance(v, (Tensor, dict, list, tuple)))


def _module_case(module: nn.Module, args: tuple, s: Setting, input: str) -> Case:
    module = module.to(s.device).train()
    return Case(
        forward=lambda: module(*args),
        loss=lambda: _mean_of(module(*args)),
        module=module,
        input=input,
        batch_size=s.batch_size,
        images=s.batch_size,
    )


def _maps(s: Setting, channels, names, seed: int) -> dict[str, Tensor]:
    g = _gen(seed)
    side = [max(1, s.image_size // 2 ** (i + 2)) for i in range(len(names))]
    return {
        n: torch.randn(s.batch_size, c, side[i], side[i], generator=g).to(s.device)
        for i, (n, c) in enumerate(zip(names, channels))
    }


def _image_input(s: Setting) -> str:
    return f"{s.batch_size}x3x{s.image_size}x{s.image_size}"


def backbone(make: Callable[[], nn.Module]) -> Callable[[Setting], Case]:
    def build(s: Setting) -> Case:
        image = torch.rand(s.batch_size, 3, s.image_size, s.image_size, generator=_gen(0))
        return _module_case(make(), (image.to(s.device),), s, _image_input(s))

    return build


def fpn(s: Setting) -> Case:
    feats = _maps(s, C_CHANNELS, ("c2", "c3", "c4", "c5"), 1)
    return _module_case(FPN(C_CHANNELS, FPN_CHANNELS), (feats,), s, f"c2..c5 of {_image_input(s)}")


def family_case(builder: BenchBuilder) -> Callable[[Setting], Case]:
    """A family's benchmark builder (plain modules and inputs) as a Case."""

    def build(s: Setting) -> Case:
        module, args, input, images = builder(s.batch_size, s.image_size, s.rois, s.device)
        case = _module_case(module, args, s, input)
        case.images = images
        return case

    return build


def _rois(s: Setting, image: int, seed: int) -> Tensor:
    return random_rois(s.rois, image, seed)


def nms_impl(implementation: str) -> Callable[[Setting], Case]:
    def build(s: Setting) -> Case:
        boxes = _rois(Setting(rois=s.boxes), 1000, 6).to(s.device)
        scores = torch.rand(s.boxes, generator=_gen(7)).to(s.device)
        if implementation == "torchvision":
            fn = lambda: tv_ops.nms(boxes, scores, 0.7)  # noqa: E731
        else:
            fn = lambda: nms(boxes, scores, 0.7, implementation=implementation)  # noqa: E731
        return Case(fn, None, None, f"{s.boxes} boxes, IoU 0.7", 1)

    return build


def batched_nms_impl(strategy: str) -> Callable[[Setting], Case]:
    def build(s: Setting) -> Case:
        boxes = _rois(Setting(rois=s.boxes), 1000, 8).to(s.device)
        scores = torch.rand(s.boxes, generator=_gen(9)).to(s.device)
        idxs = torch.randint(0, 10, (s.boxes,), generator=_gen(10)).to(s.device)
        if strategy == "torchvision":
            fn = lambda: tv_ops.batched_nms(boxes, scores, idxs, 0.5)  # noqa: E731
        else:
            fn = lambda: batched_nms(boxes, scores, idxs, 0.5, strategy=strategy)  # noqa: E731
        return Case(fn, None, None, f"{s.boxes} boxes, 10 classes, IoU 0.5", 1)

    return build


def roi_align_impl(implementation: str) -> Callable[[Setting], Case]:
    def build(s: Setting) -> Case:
        side = max(1, s.image_size // 4)
        x = torch.randn(s.batch_size, FPN_CHANNELS, side, side, generator=_gen(11)).to(s.device)
        x.requires_grad_(True)
        boxes = _rois(s, side * 4, 12)
        batch_idx = torch.randint(0, s.batch_size, (s.rois, 1), generator=_gen(13)).float()
        rois = torch.cat([batch_idx, boxes], 1).to(s.device)
        op = tv_ops.roi_align if implementation == "torchvision" else roi_align
        fn = lambda: op(x, rois, (7, 7), 0.25, 2, True)  # noqa: E731
        return Case(
            fn,
            lambda: fn().mean(),
            None,
            f"{s.rois} RoIs on {s.batch_size}x{FPN_CHANNELS}x{side}x{side}",
            s.batch_size,
        )

    return build


def loss_case(name: str) -> Callable[[Setting], Case]:
    def build(s: Setting) -> Case:
        n = s.rois * s.batch_size
        g = _gen(14)
        logits = torch.randn(n, NUM_CLASSES + 1, generator=g).to(s.device).requires_grad_(True)
        labels = torch.randint(0, NUM_CLASSES + 1, (n,), generator=g).to(s.device)
        deltas = torch.randn(n, 4, generator=g).to(s.device).requires_grad_(True)
        targets = torch.randn(n, 4, generator=g).to(s.device)
        xy = torch.rand(n, 2, generator=g) * 100
        wh = torch.rand(n, 2, generator=g) * 50 + 1
        gt = torch.cat([xy, xy + wh], 1)
        shifted = gt + torch.randn(n, 4, generator=g) * 3
        shifted[:, 2:] = torch.maximum(shifted[:, 2:], shifted[:, :2] + 1)
        boxes, gt = shifted.to(s.device).requires_grad_(True), gt.to(s.device)
        one_hot = F.one_hot(labels, NUM_CLASSES + 1).to(logits.dtype)
        fns = {
            "sigmoid_focal": lambda: sigmoid_focal_loss(logits, one_hot, reduction="sum") / n,
            "giou": lambda: generalized_box_iou_loss(boxes, gt, reduction="mean"),
            "diou": lambda: distance_box_iou_loss(boxes, gt, reduction="mean"),
            "ciou": lambda: complete_box_iou_loss(boxes, gt, reduction="mean"),
            "cross_entropy": lambda: F.cross_entropy(logits, labels),
            "smooth_l1": lambda: F.smooth_l1_loss(deltas, targets, beta=1 / 9),
            "bce_with_logits": lambda: F.binary_cross_entropy_with_logits(
                deltas, targets.sigmoid()
            ),
        }
        fn = fns[name]
        return Case(fn, fn, None, f"{n} samples", s.batch_size)

    return build


def layer_case(make: Callable[[], nn.Module], channels: int = 64) -> Callable[[Setting], Case]:
    def build(s: Setting) -> Case:
        side = max(1, s.image_size // 4)
        x = torch.randn(s.batch_size, channels, side, side, generator=_gen(15)).to(s.device)
        x.requires_grad_(True)
        case = _module_case(make(), (x,), s, f"{s.batch_size}x{channels}x{side}x{side}")
        case.images = 0
        return case

    return build


class _LayerNorm2d(nn.Module):
    """LayerNorm over channels of a [B, C, H, W] map (as in ConvNeXt)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


# name -> (group, implementation, builder, which setting axis: "image" | "boxes" | "rois")
COMPONENTS: dict[str, tuple[str, str, Callable[[Setting], Case], str]] = {
    **{
        f"backbone/{name}": ("backbone", "visdet", backbone(make), "image")
        for name, make in BENCH_BACKBONES.items()
    },
    "neck/fpn": ("neck", "visdet", fpn, "image"),
    **{
        name: (group, "visdet", family_case(builder), axis)
        for family in DETECTOR_FAMILIES
        for name, (group, axis, builder) in family.bench_components.items()
    },
    **{f"ops/nms[{i}]": ("ops", i, nms_impl(i), "boxes") for i in NMS_IMPLEMENTATIONS},
    **{
        f"ops/batched_nms[{i}]": ("ops", i, batched_nms_impl(i), "boxes")
        for i in BATCHED_NMS_STRATEGIES
    },
    "ops/roi_align[visdet]": ("ops", "visdet", roi_align_impl("visdet"), "image"),
    "loss/cross_entropy": ("loss", "torch", loss_case("cross_entropy"), "rois"),
    "loss/smooth_l1": ("loss", "torch", loss_case("smooth_l1"), "rois"),
    "loss/bce_with_logits": ("loss", "torch", loss_case("bce_with_logits"), "rois"),
    "loss/sigmoid_focal": ("loss", "visdet", loss_case("sigmoid_focal"), "rois"),
    "loss/giou": ("loss", "visdet", loss_case("giou"), "rois"),
    "loss/diou": ("loss", "visdet", loss_case("diou"), "rois"),
    "loss/ciou": ("loss", "visdet", loss_case("ciou"), "rois"),
    "activation/relu": ("activation", "torch", layer_case(nn.ReLU), "image"),
    "activation/gelu": ("activation", "torch", layer_case(nn.GELU), "image"),
    "activation/silu": ("activation", "torch", layer_case(nn.SiLU), "image"),
    "norm/batch_norm": ("norm", "torch", layer_case(lambda: nn.BatchNorm2d(64)), "image"),
    "norm/frozen_batch_norm": (
        "norm",
        "visdet",
        layer_case(lambda: FrozenBatchNorm2d(64)),
        "image",
    ),
    "norm/group_norm": ("norm", "torch", layer_case(lambda: nn.GroupNorm(32, 64)), "image"),
    "norm/layer_norm": ("norm", "torch", layer_case(lambda: _LayerNorm2d(64)), "image"),
}
if tv_ops is not None:
    COMPONENTS["ops/nms[torchvision]"] = ("ops", "torchvision", nms_impl("torchvision"), "boxes")
    COMPONENTS["ops/batched_nms[torchvision]"] = (
        "ops",
        "torchvision",
        batched_nms_impl("torchvision"),
        "boxes",
    )
    COMPONENTS["ops/roi_align[torchvision]"] = (
        "ops",
        "torchvision",
        roi_align_impl("torchvision"),
        "image",
    )

GROUPS = tuple(dict.fromkeys(group for group, *_ in COMPONENTS.values()))


def select(components: list[str] | None, groups: list[str] | None) -> list[str]:
    """Component names from names and/or groups (none given = all). ``ops/nms`` selects
    every registered implementation (``ops/nms[blocked]``, ...); unknown names raise."""

    def matches(requested: str) -> list[str]:
        return [n for n in COMPONENTS if n == requested or n.startswith(requested + "[")]

    unknown = [c for c in components or [] if not matches(c)]
    if unknown:
        valid = sorted({n.split("[")[0] for n in COMPONENTS} | set(COMPONENTS))
        raise ValueError(f"unknown component(s) {unknown}; valid: {', '.join(valid)}")
    bad_groups = [g for g in groups or [] if g not in GROUPS]
    if bad_groups:
        raise ValueError(f"unknown group(s) {bad_groups}; valid: {', '.join(GROUPS)}")
    if not components and not groups:
        return list(COMPONENTS)
    chosen = {n for c in components or [] for n in matches(c)}
    chosen |= {n for n, v in COMPONENTS.items() if v[0] in (groups or [])}
    return [n for n in COMPONENTS if n in chosen]
