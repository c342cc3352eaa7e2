"""Make tests/reference_data/torchvision_loss_references.pt: real torchvision loss outputs.

Run with a separate virtualenv that has torchvision (never a visdet dependency):

    python -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /tmp/tvenv/bin/python tests/reference_data/make_torchvision_loss_references.py

The file holds float64 box pairs (random, identical, disjoint, touching, nested) and
torchvision's generalized/distance/complete box IoU losses for every reduction with the
gradient of the summed loss, and logits/targets with sigmoid_focal_loss at four settings.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torchvision.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

OUT = Path(__file__).with_name("torchvision_loss_references.pt")


def main() -> None:
    g = torch.Generator().manual_seed(2026)
    xy = torch.rand(60, 2, generator=g, dtype=torch.float64) * 80
    wh = torch.rand(60, 2, generator=g, dtype=torch.float64) * 40 + 0.25
    boxes1 = torch.cat([xy, xy + wh], 1)
    boxes2 = boxes1 + torch.randn(60, 4, generator=g, dtype=torch.float64) * 6
    boxes2[:, 2:] = torch.maximum(boxes2[:, 2:], boxes2[:, :2] + 0.25)
    special = torch.tensor(
        [[[0, 0, 10, 10], [0, 0, 10, 10]], [[0, 0, 10, 10], [20, 20, 30, 40]],
         [[0, 0, 10, 10], [10, 0, 20, 10]], [[0, 0, 100, 100], [40, 40, 60, 60]]],
        dtype=torch.float64,
    )  # fmt: skip
    refs = {
        "boxes1": torch.cat([boxes1, special[:, 0]]),
        "boxes2": torch.cat([boxes2, special[:, 1]]),
    }
    for name, fn in (
        ("generalized_box_iou_loss", generalized_box_iou_loss),
        ("distance_box_iou_loss", distance_box_iou_loss),
        ("complete_box_iou_loss", complete_box_iou_loss),
    ):
        for reduction in ("none", "sum", "mean"):
            refs[f"{name}_{reduction}"] = fn(refs["boxes1"], refs["boxes2"], reduction=reduction)
        boxes = refs["boxes1"].clone().requires_grad_()
        fn(boxes, refs["boxes2"], reduction="sum").backward()
        refs[f"{name}_grad"] = boxes.grad
    refs["logits"] = torch.randn(8, 11, generator=g, dtype=torch.float64) * 4
    targets = (torch.rand(8, 11, generator=g) > 0.8).double()
    targets[0, :4] = torch.tensor([0.1, 0.5, 0.7, 1.0], dtype=torch.float64)
    refs["targets"] = targets
    settings = {
        "default": (0.25, 2.0),
        "no_alpha": (-1.0, 2.0),
        "bce": (0.5, 0.0),
        "g3": (0.75, 3.0),
    }
    refs["focal_settings"] = settings
    for key, (alpha, gamma) in settings.items():
        refs[f"sigmoid_focal_loss_{key}"] = sigmoid_focal_loss(
            refs["logits"], refs["targets"], alpha, gamma
        )
    refs["torchvision_version"] = torchvision.__version__
    torch.save(refs, OUT)
    print(f"wrote {OUT} (torchvision {torchvision.__version__})")


if __name__ == "__main__":
    main()
