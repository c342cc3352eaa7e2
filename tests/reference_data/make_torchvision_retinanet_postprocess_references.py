"""Make tests/reference_data/torchvision_retinanet_postprocess_references.pt: detections of
torchvision's RetinaNet.postprocess_detections for given per-level head outputs and anchors.

    /tmp/tvenv/bin/python tests/reference_data/make_torchvision_retinanet_postprocess_references.py

Two images (the second with logits so low that nothing passes the score threshold), three
levels, a small top-k (50) and detection limit (30) so both cut.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.retinanet import RetinaNet

OUT = Path(__file__).with_name("torchvision_retinanet_postprocess_references.pt")
SETTINGS = {"score_thresh": 0.05, "topk_candidates": 50, "nms_thresh": 0.5,
            "detections_per_img": 30}  # fmt: skip
LEVELS, CLASSES, SIZE = (300, 120, 40), 4, (90, 110)


def main() -> None:
    g = torch.Generator().manual_seed(11)
    logits, deltas, anchors = [], [], []
    for n in LEVELS:
        lg = torch.randn(2, n, CLASSES, generator=g, dtype=torch.float64) - 1.5
        lg[1] = -20.0  # nothing above the threshold
        logits.append(lg)
        deltas.append(torch.randn(2, n, 4, generator=g, dtype=torch.float64) * 0.3)
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 100 - 5
        anchors.append(
            torch.cat([xy, xy + torch.rand(n, 2, generator=g, dtype=torch.float64) * 30 + 4], 1)
        )
    fake = SimpleNamespace(box_coder=det_utils.BoxCoder((1.0, 1.0, 1.0, 1.0)), **SETTINGS)
    out = RetinaNet.postprocess_detections(
        fake, {"cls_logits": logits, "bbox_regression": deltas}, [anchors, anchors], [SIZE, SIZE]
    )
    refs = {"settings": SETTINGS, "size": SIZE, "cls_logits": logits, "bbox_regression": deltas,
            "anchors": anchors,
            "detections": [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] + 1}
                           for d in out],  # visdet's labels are 1..K
            "torchvision_version": torchvision.__version__}  # fmt: skip
    torch.save(refs, OUT)
    print(f"wrote {OUT}: {[len(d['scores']) for d in out]} detections")


if __name__ == "__main__":
    main()
