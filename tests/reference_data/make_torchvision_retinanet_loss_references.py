"""Make tests/reference_data/torchvision_retinanet_loss_references.pt: torchvision's RetinaNet
training losses (anchor matching + RetinaNetHead.compute_loss) for given head outputs.

    /tmp/tvenv/bin/python tests/reference_data/make_torchvision_retinanet_loss_references.py

Two images (one without boxes), float64 head outputs, box losses l1 (v1) and giou (v2).
torchvision's labels are its column indices (0..K-1 here); visdet's are 1..K, so the stored
targets hold visdet's labels and torchvision gets them minus one.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import box_iou

OUT = Path(__file__).with_name("torchvision_retinanet_loss_references.pt")
ANCHORS, CLASSES = 400, 5


def boxes(n: int, g: torch.Generator, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * size / 3 + 2
    return torch.cat([xy, xy + wh], 1)


def main() -> None:
    g = torch.Generator().manual_seed(7)
    anchors = [boxes(ANCHORS, g), boxes(ANCHORS, g)]
    gt = boxes(6, g)
    # near-copies of some anchors, so there are matches above 0.5
    gt[:3] = anchors[0][:3] + torch.rand(3, 4, generator=g, dtype=torch.float64)
    targets = [
        {"boxes": gt, "labels": torch.tensor([1, 2, 3, 5, 1, 4])},
        {
            "boxes": torch.zeros(0, 4, dtype=torch.float64),
            "labels": torch.zeros(0, dtype=torch.int64),
        },
    ]
    cls_logits = torch.randn(2, ANCHORS, CLASSES, generator=g, dtype=torch.float64)
    bbox_regression = torch.randn(2, ANCHORS, 4, generator=g, dtype=torch.float64) * 0.2
    matcher = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)
    matched = [
        matcher(box_iou(t["boxes"], a)) if t["boxes"].numel()
        else torch.full((a.shape[0],), -1, dtype=torch.int64)
        for a, t in zip(anchors, targets)
    ]  # fmt: skip
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] - 1} for t in targets]
    refs = {"anchors": anchors, "targets": targets, "cls_logits": cls_logits,
            "bbox_regression": bbox_regression, "matched_idxs": matched}  # fmt: skip
    head = RetinaNetHead(8, 9, CLASSES)
    outputs = {"cls_logits": cls_logits, "bbox_regression": bbox_regression}
    for kind in ("l1", "giou"):
        head.regression_head._loss_type = kind
        losses = head.compute_loss(tv_targets, outputs, anchors, matched)
        refs[f"{kind}_classification"] = losses["classification"]
        refs[f"{kind}_bbox_regression"] = losses["bbox_regression"]
    refs["torchvision_version"] = torchvision.__version__
    torch.save(refs, OUT)
    print(f"wrote {OUT} (torchvision {torchvision.__version__})")


if __name__ == "__main__":
    main()
