"""Make tests/reference_data/torchvision_faster_rcnn_r50_{v1,v2}.pt (torchvision detections).

The models are torchvision's own ``fasterrcnn_resnet50_fpn`` (v1) and
``fasterrcnn_resnet50_fpn_v2`` (91 classes incl. background, weights=None,
weights_backbone=None, so the backbone norm is BatchNorm2d), small input sizes, every tensor
set by ``deterministic_weights.fill_detector`` (beside this file), run in float64 in eval
mode. The files hold the state-dict layout (keys and shapes, no weights), the constructor
settings, the proposals and the detections. Run it in a separate virtualenv that has
torchvision (never a visdet dependency):

    /tmp/tvenv/bin/python tests/reference_data/make_torchvision_r50_references.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision
from torchvision.models.detection import fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2

sys.path.insert(0, str(Path(__file__).parent))
import deterministic_weights as dw  # noqa: E402
from make_torchvision_detector_reference import proposals_and_detections  # noqa: E402

SETTINGS = {"min_size": 128, "max_size": 200, "rpn_post_nms_top_n_test": 100}
BUILDERS = {"v1": fasterrcnn_resnet50_fpn, "v2": fasterrcnn_resnet50_fpn_v2}


def main() -> None:
    torch.manual_seed(0)  # construction only; every tensor is overwritten below
    for variant, builder in BUILDERS.items():
        model = builder(weights=None, weights_backbone=None, num_classes=91, **SETTINGS)
        layout = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        model.load_state_dict(dw.fill_detector(layout), strict=True)
        proposals, detections = proposals_and_detections(model)
        out = Path(__file__).with_name(f"torchvision_faster_rcnn_r50_{variant}.pt")
        torch.save(
            {
                "torchvision": torchvision.__version__,
                "builder": builder.__name__,
                "layout": layout,
                "settings": SETTINGS,
                "proposals": proposals,
                "detections": detections,
            },
            out,
        )
        print(
            f"wrote {out.name} ({out.stat().st_size} bytes): detections per image "
            f"{[len(d['boxes']) for d in detections]}, proposals {[len(p) for p in proposals]}, "
            f"top scores {[round(float(d['scores'][:1].sum()), 4) for d in detections]}"
        )


if __name__ == "__main__":
    main()
