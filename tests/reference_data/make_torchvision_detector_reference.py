"""Make tests/reference_data/torchvision_faster_rcnn_r18.pt (torchvision detections).

The model is torchvision's FasterRCNN on a ResNet-18 FPN backbone (FrozenBatchNorm2d,
3 classes incl. background), with every tensor set by deterministic_weights.py (beside
this file)
and run in float64, so visdet can rebuild the same weights and compare detections. Run it
in a separate virtualenv that has torchvision (never a visdet dependency):

    /tmp/tvenv/bin/python tests/reference_data/make_torchvision_detector_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import misc

sys.path.insert(0, str(Path(__file__).parent))
import deterministic_weights as dw  # noqa: E402

OUT = Path(__file__).with_name("torchvision_faster_rcnn_r18.pt")
SETTINGS = {"min_size": 128, "max_size": 200}


def proposals_and_detections(model) -> tuple[list, list]:
    """A torchvision detector's RPN proposals and detections on ``dw.images()``, in float64
    and eval mode."""
    model = model.double().eval()
    images = dw.images()
    with torch.no_grad():
        images_t, _ = model.transform(images)
        features = model.backbone(images_t.tensors)
        proposals, _ = model.rpn(images_t, features)
        return proposals, model(images)


def main() -> None:
    backbone = resnet_fpn_backbone(
        backbone_name="resnet18",
        weights=None,
        norm_layer=misc.FrozenBatchNorm2d,
        trainable_layers=3,
    )
    model = FasterRCNN(backbone, num_classes=3, **SETTINGS)
    layout = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(dw.fill(layout), strict=True)
    proposals, detections = proposals_and_detections(model)
    torch.save(
        {
            "torchvision": torchvision.__version__,
            "layout": layout,
            "settings": SETTINGS,
            "proposals": proposals,
            "detections": detections,
        },
        OUT,
    )
    print(
        f"wrote {OUT}: detections per image {[len(d['boxes']) for d in detections]}, "
        f"proposals {[len(p) for p in proposals]}"
    )


if __name__ == "__main__":
    main()
