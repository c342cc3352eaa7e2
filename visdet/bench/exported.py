"""Exported detector files (``visdet export ckpt=...``) against their eager checkpoint:
``visdet bench bench.exported=[deploy/detector.onnx,...]`` adds one row per file, batch size
and image size (``system/exported_<format>``, ``b<B>_<H>x<W>``) with the file's latency, the
eager graph's (``extra.eager_ms``) and their ratio, measured in the same run."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from visdet.bench.measure import time_ms
from visdet.bench.schema import new_result


def exported_latency(
    files: Sequence[str],
    batch_sizes: Sequence[int] = (1, 4),
    sizes: Sequence[Sequence[int]] = ((128, 128), (160, 192)),
    repeats: int = 3,
    warmup: int = 1,
) -> list[dict]:
    """One result per file x batch size x size (CPU; images are seeded noise)."""
    from visdet.export.detector_graph import DetectorGraph
    from visdet.export.detector_runner import load_exported_detector, read_sidecar
    from visdet.inference import Detector

    results = []
    for path in files:
        meta = read_sidecar(path)
        if not meta.get("checkpoint"):
            raise ValueError(f"{path}: its sidecar names no checkpoint to compare with")
        run = load_exported_detector(path).detector.run
        graph = DetectorGraph(Detector.from_checkpoint(meta["checkpoint"]).detector,
                              meta["max_det"]).eval()  # fmt: skip
        for b in batch_sizes:
            for h, w in sizes:
                images = torch.rand(int(b), 3, int(h), int(w),
                                    generator=torch.Generator().manual_seed(b))  # fmt: skip

                def eager(images=images, graph=graph):
                    with torch.no_grad():
                        return graph(images)

                stats = time_ms(lambda images=images, run=run: run(images), repeats, warmup)
                reference = time_ms(eager, repeats, warmup)
                results.append(
                    new_result(
                        f"system/exported_{meta['format']}",
                        "system",
                        "visdet",
                        f"b{b}_{h}x{w}",
                        batch_size=int(b),
                        input=f"{b}x3x{h}x{w}",
                        params=0,
                        forward_ms=stats,
                        throughput={"images_per_s": b / (stats["median"] / 1000)},
                        extra={
                            "file": str(path),
                            "eager_ms": reference["median"],
                            "exported_over_eager": stats["median"] / reference["median"],
                        },
                    )  # fmt: skip
                )
    return results


def format_exported(results: Sequence[dict]) -> str:
    """The exported rows against eager: file, case, exported ms, eager ms, ratio."""
    rows = [r for r in results if r["component"].startswith("system/exported_")]
    if not rows:
        return ""
    lines = [f"{'exported file':<40} {'case':<12} {'file ms':>8} {'eager ms':>9} {'ratio':>6}"]
    for r in rows:
        lines.append(
            f"{r['extra']['file'][-40:]:<40} {r['case']:<12} {r['forward_ms']['median']:>8.1f} "
            f"{r['extra']['eager_ms']:>9.1f} {r['extra']['exported_over_eager']:>6.2f}"
        )
    return "\n".join(lines)
