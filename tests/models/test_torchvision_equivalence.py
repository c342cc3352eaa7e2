"""visdet's Faster R-CNN equals torchvision's on the same weights and input.

The reference (tests/reference_data/torchvision_faster_rcnn_r18.pt) holds torchvision's
proposals and detections for a ResNet-18 FPN Faster R-CNN whose every tensor comes from a
closed formula (tests/reference_data/deterministic_weights.py), run in float64. Here the same
weights are renamed with ``faster_rcnn_from_torchvision`` and loaded strictly into visdet's
model.
"""

import sys
from pathlib import Path

import pytest
import torch

from visdet.models import faster_rcnn_resnet_fpn
from visdet.models.detectors.torchvision_keys import faster_rcnn_from_torchvision

DATA_DIR = Path(__file__).parents[1] / "reference_data"
sys.path.insert(0, str(DATA_DIR))
import deterministic_weights as dw  # noqa: E402

REF = torch.load(DATA_DIR / "torchvision_faster_rcnn_r18.pt", weights_only=False)


@pytest.fixture(scope="module")
def model():
    m = faster_rcnn_resnet_fpn(2, depth=18, **REF["settings"])
    m.load_state_dict(faster_rcnn_from_torchvision(dw.fill(REF["layout"])), strict=True)
    return m.double().eval()


def test_proposals_equal_torchvision(model):
    images = dw.images()
    with torch.no_grad():
        batch, sizes, _ = model.transform(images)
        features = model.neck(model.backbone(batch))
        proposals, _ = model.rpn(list(features.values()), sizes, tuple(batch.shape[-2:]))
    assert [len(p) for p in proposals] == [len(p) for p in REF["proposals"]]
    for ours, theirs in zip(proposals, REF["proposals"]):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_detections_equal_torchvision(model):
    with torch.no_grad():
        detections = model(dw.images())
    for ours, theirs in zip(detections, REF["detections"]):
        assert len(theirs["boxes"]) > 10
        assert torch.equal(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["boxes"], theirs["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(ours["scores"], theirs["scores"], rtol=0, atol=1e-4)


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="no visdet counterpart"):
        faster_rcnn_from_torchvision({"roi_heads.box_head.0.0.weight": torch.zeros(1)})
