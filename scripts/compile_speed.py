"""``model.compile=true``'s effect: the main job's detector (Faster R-CNN R18-FPN, 4 classes)
eager and compiled (visdet.models.compile, inductor), a training step (forward + backward +
SGD step) on ``--batch`` images of ``--size`` px with 4 objects each and inference on the
same images: the first call (compilation included) and the median of the next ``--repeats``.

    .venv/bin/python scripts/compile_speed.py [--size 128 --batch 8 --repeats 5 --device cpu]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from visdet.bench.core import images_and_targets
from visdet.bench.measure import time_ms
from visdet.config.presets import build_detector
from visdet.io.text_table import format_columns
from visdet.models.compile import compile_detector


def timings(detector, images, targets, repeats: int, device: str) -> dict[str, float]:
    optimizer = torch.optim.SGD(detector.parameters(), lr=1e-4, momentum=0.9)

    def step():
        detector.train()
        optimizer.zero_grad(set_to_none=True)
        sum(detector(images, targets).values()).backward()
        optimizer.step()

    def infer():
        detector.eval()
        with torch.no_grad():
            detector(images)

    out = {}
    for name, fn in (("train", step), ("infer", infer)):
        start = time.perf_counter()
        fn()
        out[f"{name}_first_s"] = time.perf_counter() - start
        out[f"{name}_ms"] = time_ms(fn, repeats, warmup=1, device=device)["median"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    eager = build_detector("faster_rcnn_r18_fpn", 4, []).to(args.device)
    compiled = copy.deepcopy(eager)
    compile_detector(compiled, bucket=32)
    images, targets = images_and_targets(args.batch, args.size, args.device)
    for t in targets:
        t["labels"] = (t["labels"] - 1) % 4 + 1
    results = {
        "eager": timings(eager, images, targets, args.repeats, args.device),
        "compiled": timings(compiled, images, targets, args.repeats, args.device),
    }
    rows = [("", "train step ms", "first step s", "inference ms", "first inference s")]
    for name, r in results.items():
        rows.append((name, f"{r['train_ms']:.0f}", f"{r['train_first_s']:.1f}",
                     f"{r['infer_ms']:.0f}", f"{r['infer_first_s']:.1f}"))  # fmt: skip
    e, c = results["eager"], results["compiled"]
    rows.append(("compiled / eager", f"{c['train_ms'] / e['train_ms']:.2f}", "",
                 f"{c['infer_ms'] / e['infer_ms']:.2f}", ""))  # fmt: skip
    where = f"{args.batch} x {args.size} px, {args.device}, torch {torch.__version__}"
    print(f"Faster R-CNN R18-FPN, {where}")
    print("\n".join(format_columns(rows)))


if __name__ == "__main__":
    main()
