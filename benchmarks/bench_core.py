"""Benchmark of the core library: nms, roi_align and Faster R-CNN step times.

    python benchmarks/bench_core.py                 # everything (a few minutes on 2 cores)
    python benchmarks/bench_core.py --only nms --repeats 5
    make bench

Times are medians over ``--repeats`` runs after a warm-up, with the interquartile range.
The reference column holds torchvision's figures measured on this machine kind (DESIGN.md).
When torchvision imports (e.g. run from a separate virtualenv that has it, with visdet on
PYTHONPATH), its ops and detector are timed in the same run and the ratio column compares
like with like; otherwise it compares with the stored reference figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from visdet.models import faster_rcnn_resnet_fpn
from visdet.ops import nms, roi_align

try:  # optional, for same-run ratios only; never a dependency
    import torchvision  # type: ignore[import-not-found]
except Exception:  # noqa: BLE001 - any import failure just means "not available"
    torchvision = None

NMS_REFERENCE_MS = {1000: 4.7, 2000: 12.6, 6000: 118.0}
ROI_ALIGN_REFERENCE_MS = 830.0
DETECTOR_REFERENCE_S = {
    ("R50", 320, "train"): 1.4,
    ("R50", 320, "infer"): 0.46,
    ("R50", 512, "infer"): 6.3,
}


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, float]:
    """Median and interquartile range of ``fn``'s wall time in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    if len(times) < 4:
        return statistics.median(times), max(times) - min(times)
    q = statistics.quantiles(times, n=4)
    return statistics.median(times), q[2] - q[0]


def random_boxes(n: int, gen: torch.Generator, image: float = 1000.0) -> torch.Tensor:
    """Uniform top-left corners in an image x image canvas, sides uniform in [1, image/4]."""
    xy = torch.rand(n, 2, generator=gen) * image
    wh = torch.rand(n, 2, generator=gen) * (image / 4 - 1) + 1
    return torch.cat([xy, xy + wh], 1)


def row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def bench_nms(repeats: int) -> None:
    widths = [22, 8, 12, 10, 12, 8]
    print("\n## nms (random boxes, IoU 0.7)")
    print(row(["case", "kept", "visdet ms", "IQR ms", "ref ms", "ratio"], widths))
    gen = torch.Generator().manual_seed(0)
    for n in (1000, 2000, 6000, 12000):
        boxes, scores = random_boxes(n, gen), torch.rand(n, generator=gen)
        med, iqr = timeit(lambda b=boxes, s=scores: nms(b, s, 0.7), repeats)
        kept = len(nms(boxes, scores, 0.7))
        if torchvision is not None:
            ref, _ = timeit(lambda b=boxes, s=scores: torchvision.ops.nms(b, s, 0.7), repeats)
            ref_ms, label = ref * 1e3, "tv now"
            assert torch.equal(torchvision.ops.nms(boxes, scores, 0.7), nms(boxes, scores, 0.7))
        else:
            ref_ms, label = NMS_REFERENCE_MS.get(n, float("nan")), "stored"
        print(
            row(
                [
                    f"{n} boxes ({label})",
                    str(kept),
                    f"{med * 1e3:.1f}",
                    f"{iqr * 1e3:.1f}",
                    f"{ref_ms:.1f}",
                    f"{med * 1e3 / ref_ms:.2f}",
                ],
                widths,
            )
        )
    # RPN-like input: boxes jittered around a few objects, so most are suppressed
    centres = random_boxes(20, gen)
    boxes = centres.repeat(300, 1) + torch.randn(6000, 4, generator=gen) * 8
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    scores = torch.rand(6000, generator=gen)
    med, iqr = timeit(lambda: nms(boxes, scores, 0.7), repeats)
    print(
        row(
            [
                "6000 clustered",
                str(len(nms(boxes, scores, 0.7))),
                f"{med * 1e3:.1f}",
                f"{iqr * 1e3:.1f}",
                "-",
                "-",
            ],
            widths,
        )
    )


def bench_roi_align(repeats: int) -> None:
    widths = [34, 12, 10, 12, 8]
    print("\n## roi_align forward+backward (512 RoIs on [2,256,200,200], 7x7, sampling 2, aligned)")
    print(row(["case", "visdet ms", "IQR ms", "ref ms", "ratio"], widths))
    gen = torch.Generator().manual_seed(0)
    feat = torch.rand(2, 256, 200, 200, generator=gen, requires_grad=True)
    xy = torch.rand(512, 2, generator=gen) * 180
    wh = torch.rand(512, 2, generator=gen) * 60 + 2
    rois = torch.cat([torch.randint(0, 2, (512, 1), generator=gen).float(), xy, xy + wh], 1)

    def step(fn):
        feat.grad = None
        fn(feat, rois, 7, 1.0, 2, True).sum().backward()

    med, iqr = timeit(lambda: step(roi_align), repeats)
    if torchvision is not None:
        ref, _ = timeit(lambda: step(torchvision.ops.roi_align), repeats)
        ref_ms, label = ref * 1e3, "tv now"
    else:
        ref_ms, label = ROI_ALIGN_REFERENCE_MS, "stored"
    print(
        row(
            [
                f"fwd+bwd ({label})",
                f"{med * 1e3:.0f}",
                f"{iqr * 1e3:.0f}",
                f"{ref_ms:.0f}",
                f"{med * 1e3 / ref_ms:.2f}",
            ],
            widths,
        )
    )


class PartTimer:
    """Forward wall time of named sub-modules per call of the whole model (hooks)."""

    def __init__(self, parts: dict[str, torch.nn.Module]) -> None:
        self.current = dict.fromkeys(parts, 0.0)
        self._start: dict[str, float] = {}
        for name, module in parts.items():
            module.register_forward_pre_hook(lambda m, a, n=name: self._begin(n))
            module.register_forward_hook(lambda m, a, o, n=name: self._end(n))

    def _begin(self, name: str) -> None:
        self._start[name] = time.perf_counter()

    def _end(self, name: str) -> None:
        self.current[name] += time.perf_counter() - self._start[name]

    def measure(self, fn: Callable[[], object], repeats: int) -> dict[str, float]:
        """Medians over ``repeats`` calls of the total and of each part; ``rest`` is the
        median of (total - parts): backward, transform and glue."""
        fn()  # warm-up
        rows = []
        for _ in range(repeats):
            self.current = dict.fromkeys(self.current, 0.0)
            t = time.perf_counter()
            fn()
            total = time.perf_counter() - t
            rows.append(
                {"total": total, **self.current, "rest": total - sum(self.current.values())}
            )
        out = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        totals = sorted(r["total"] for r in rows)
        out["iqr"] = totals[(3 * len(totals)) // 4] - totals[len(totals) // 4]
        return out


def torchvision_twin(depth: int, size: int):
    """torchvision's Faster R-CNN with the same architecture, or None without torchvision."""
    if torchvision is None:
        return None
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import misc

    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(
        backbone_name=f"resnet{depth}",
        weights=None,
        norm_layer=misc.FrozenBatchNorm2d,
        trainable_layers=3,
    )
    return FasterRCNN(backbone, num_classes=81, min_size=size, max_size=size * 2)


def bench_detectors(repeats: int, sizes: list[int], depths: list[int]) -> None:
    widths = [30, 8, 8, 9, 8, 8, 8, 8, 10]
    print("\n## Faster R-CNN ResNet-FPN, 2 images, torchvision defaults (seconds, medians)")
    print("   parts: forward time of each; rest: backward, transform, glue. With torchvision")
    print("   present both detectors run the same weights (copied by key mapping).")
    print(
        row(["case", "total", "IQR", "backbone", "neck", "rpn", "roi", "rest", "proposals"], widths)
    )
    gen = torch.Generator().manual_seed(0)
    for depth in depths:
        for size in sizes:
            torch.manual_seed(0)
            model = faster_rcnn_resnet_fpn(80, depth=depth, min_size=size, max_size=size * 2)
            twin = torchvision_twin(depth, size)
            if twin is not None:
                from visdet.models.detectors.torchvision_keys import faster_rcnn_from_torchvision

                model.load_state_dict(faster_rcnn_from_torchvision(twin.state_dict()))
            ours = PartTimer(
                {
                    "backbone": model.backbone,
                    "neck": model.neck,
                    "rpn": model.rpn,
                    "roi": model.roi_heads,
                }
            )
            theirs = (
                None
                if twin is None
                else PartTimer(
                    {
                        "backbone": twin.backbone.body,
                        "neck": twin.backbone.fpn,
                        "rpn": twin.rpn,
                        "roi": twin.roi_heads,
                    }
                )
            )
            images = [torch.rand(3, size, size, generator=gen) for _ in range(2)]
            targets = []
            for _ in range(2):
                xy = torch.rand(5, 2, generator=gen) * size * 0.6
                wh = torch.rand(5, 2, generator=gen) * size * 0.3 + 16
                targets.append(
                    {
                        "boxes": torch.cat([xy, xy + wh], 1),
                        "labels": torch.randint(1, 81, (5,), generator=gen),
                    }
                )
            with torch.no_grad():
                model.eval()
                proposals = model.rpn(
                    list(model.neck(model.backbone(model.transform(images)[0])).values()),
                    model.transform(images)[1],
                    (size, size),
                )[0]
            n_props = "/".join(str(len(p)) for p in proposals)

            def train_step(m, im=images, tg=targets):
                m.train()
                sum(m(im, tg).values()).backward()

            def infer(m, im=images):
                m.eval()
                with torch.no_grad():
                    m(im)

            for mode, fn in (("train", train_step), ("infer", infer)):
                for name, timer, m in (("visdet", ours, model), ("torchvision", theirs, twin)):
                    if timer is None:
                        continue
                    r = timer.measure(lambda m=m, fn=fn: fn(m), repeats)
                    print(
                        row(
                            [
                                f"R{depth} {size} {mode} {name}",
                                f"{r['total']:.3f}",
                                f"{r['iqr']:.3f}",
                                *(
                                    f"{r[k]:.3f}"
                                    for k in ("backbone", "neck", "rpn", "roi", "rest")
                                ),
                                n_props if name == "visdet" else "",
                            ],
                            widths,
                        ),
                        flush=True,
                    )
            if twin is None:
                for mode in ("train", "infer"):
                    ref = DETECTOR_REFERENCE_S.get((f"R{depth}", size, mode))
                    if ref is not None:
                        print(f"   stored torchvision reference R{depth} {size} {mode}: {ref} s")


def main() -> None:
    parser = argparse.ArgumentParser(description="visdet core benchmark")
    parser.add_argument(
        "--only",
        choices=("nms", "roi_align", "detector"),
        action="append",
        help="run only these parts (repeatable); default all",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case (>= 1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 512])
    parser.add_argument("--depths", type=int, nargs="+", default=[18, 50])
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    only = set(args.only or ("nms", "roi_align", "detector"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"torchvision {'not available' if torchvision is None else torchvision.__version__}"
    )
    if "nms" in only:
        bench_nms(args.repeats)
    if "roi_align" in only:
        bench_roi_align(args.repeats)
    if "detector" in only:
        bench_detectors(max(1, args.repeats // 2), args.sizes, args.depths)


if __name__ == "__main__":
    main()
