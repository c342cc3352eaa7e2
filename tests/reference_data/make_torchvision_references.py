"""Make tests/reference_data/torchvision_references.pt: real torchvision outputs to match.

Run with a separate virtualenv that has torchvision (never a visdet dependency):

    python -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.2
    /tmp/tvenv/bin/python tests/reference_data/make_torchvision_references.py

The file holds inputs and torchvision's results for nms, batched_nms, roi_align (outputs and
input gradients), AnchorGenerator, BoxCoder and the ResNet state-dict layouts.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torchvision.models import resnet18, resnet50
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

OUT = Path(__file__).with_name("torchvision_references.pt")


def random_boxes(n: int, gen: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 3
    return torch.cat([xy, xy + wh], 1)


def nms_cases(gen: torch.Generator) -> list[dict]:
    cases = []
    for n, thr in [(0, 0.5), (1, 0.5), (50, 0.3), (300, 0.5), (300, 0.7), (2000, 0.7), (700, 0.0)]:
        boxes, scores = random_boxes(n, gen), torch.rand(n, generator=gen)
        cases.append(
            {
                "boxes": boxes,
                "scores": scores,
                "threshold": thr,
                "keep": torchvision.ops.nms(boxes, scores, thr),
            }
        )
    centres = random_boxes(10, gen, 500)
    boxes = centres.repeat(60, 1) + torch.randn(600, 4, generator=gen) * 3
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    scores = torch.rand(600, generator=gen)
    cases.append(
        {
            "boxes": boxes,
            "scores": scores,
            "threshold": 0.6,
            "keep": torchvision.ops.nms(boxes, scores, 0.6),
        }
    )
    return cases


def batched_cases(gen: torch.Generator) -> list[dict]:
    cases = []
    for n, k in [(200, 3), (1500, 20)]:  # 1500 boxes: torchvision's per-class path on CPU
        boxes, scores = random_boxes(n, gen), torch.rand(n, generator=gen)
        idxs = torch.randint(0, k, (n,), generator=gen)
        cases.append(
            {
                "boxes": boxes,
                "scores": scores,
                "idxs": idxs,
                "threshold": 0.5,
                "keep": torchvision.ops.batched_nms(boxes, scores, idxs, 0.5),
            }
        )
    return cases


def roi_align_cases(gen: torch.Generator) -> list[dict]:
    cases = []
    feat = torch.rand(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    xy = torch.rand(12, 2, generator=gen, dtype=torch.float64) * 16 - 3
    wh = torch.rand(12, 2, generator=gen, dtype=torch.float64) * 10
    rois = torch.cat([torch.randint(0, 2, (12, 1), generator=gen).double(), xy, xy + wh], 1)
    rois[0, 1:] = torch.tensor([-4.0, -4.0, -1.5, -2.0], dtype=torch.float64)  # outside
    rois[1, 1:] = torch.tensor([3.0, 3.0, 3.0, 3.0], dtype=torch.float64)  # zero size
    rois[2, 1:] = torch.tensor([8.0, 6.0, 14.0, 12.0], dtype=torch.float64)  # over the edge
    for aligned in (False, True):
        for sampling in (-1, 0, 2, 3):
            for scale, size in ((1.0, (3, 3)), (0.5, (2, 4)), (1.5, (1, 1))):
                x = feat.clone().requires_grad_(True)
                out = torchvision.ops.roi_align(x, rois, size, scale, sampling, aligned)
                weight = torch.rand(out.shape, generator=gen, dtype=torch.float64)
                (out * weight).sum().backward()
                cases.append(
                    {
                        "input": feat,
                        "rois": rois,
                        "output_size": size,
                        "spatial_scale": scale,
                        "sampling_ratio": sampling,
                        "aligned": aligned,
                        "output": out.detach(),
                        "weight": weight,
                        "grad": x.grad,
                    }
                )
    return cases


def anchor_cases() -> list[dict]:
    cases = []
    for sizes, ratios, image, feats in [
        (
            ((32,), (64,), (128,), (256,), (512,)),
            ((0.5, 1.0, 2.0),) * 5,
            (96, 128),
            [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)],
        ),
        (((16, 24), (48,)), ((0.5, 1.0), (1.0, 2.0, 3.0)), (40, 56), [(10, 14), (5, 7)]),
    ]:
        gen = AnchorGenerator(sizes, ratios)
        images = ImageList(torch.zeros(1, 3, *image), [image])
        fmaps = [torch.zeros(1, 1, *f) for f in feats]
        cases.append(
            {
                "sizes": sizes,
                "aspect_ratios": ratios,
                "image_size": image,
                "feature_sizes": feats,
                "anchors": gen(images, fmaps)[0],
            }
        )
    return cases


def box_coder_cases(gen: torch.Generator) -> list[dict]:
    refs = random_boxes(40, gen) + torch.tensor([0.0, 0, 1, 1])
    boxes = random_boxes(40, gen) + torch.tensor([0.0, 0, 1, 1])
    deltas = torch.randn(40, 8, generator=gen) * 2
    deltas[0, 2] = 10.0  # beyond the clamp
    out = []
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        coder = BoxCoder(weights)
        out.append(
            {
                "weights": weights,
                "references": refs,
                "boxes": boxes,
                "deltas": deltas,
                "encoded": coder.encode_single(boxes, refs),
                "decoded": coder.decode_single(deltas, refs),
            }
        )
    return out


def main() -> None:
    gen = torch.Generator().manual_seed(2024)
    data = {
        "torchvision": torchvision.__version__,
        "nms": nms_cases(gen),
        "batched_nms": batched_cases(gen),
        "roi_align": roi_align_cases(gen),
        "anchors": anchor_cases(),
        "box_coder": box_coder_cases(gen),
        "resnet_layouts": {
            depth: {k: tuple(v.shape) for k, v in fn().state_dict().items()}
            for depth, fn in ((18, resnet18), (50, resnet50))
        },
    }
    torch.save(data, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB), torchvision {torchvision.__version__}")


if __name__ == "__main__":
    main()
