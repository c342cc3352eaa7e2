"""visdet's Faster R-CNN equals torchvision's on the same weights and input.

The references (tests/reference_data/torchvision_faster_rcnn_{r18,r50_v1,r50_v2}.pt) hold
torchvision's proposals and detections for a ResNet-18 FPN Faster R-CNN and for torchvision's
own ``fasterrcnn_resnet50_fpn`` (v1) and ``fasterrcnn_resnet50_fpn_v2`` builders, whose every
tensor comes from a closed formula (tests/reference_data/deterministic_weights.py), run in
float64. Here the same weights are renamed with ``faster_rcnn_from_torchvision`` and loaded
strictly into visdet's model, built with the settings of conf/model/faster_rcnn_r50_fpn*.yaml.
"""

import sys
from pathlib import Path

import pytest
import torch

from visdet.models import faster_rcnn_resnet_fpn
from visdet.models.weights.convert.torchvision_faster_rcnn import (
    faster_rcnn_from_torchvision,
    torchvision_variant,
)

DATA_DIR = Path(__file__).parents[1] / "reference_data"
sys.path.insert(0, str(DATA_DIR))
import deterministic_weights as dw  # noqa: E402

REF = torch.load(DATA_DIR / "torchvision_faster_rcnn_r18.pt", weights_only=False)
# visdet arguments of conf/model/faster_rcnn_r50_fpn.yaml / faster_rcnn_r50_fpn_v2.yaml
R50_VARIANTS = {
    "v1": {},
    "v2": {"norm": "bn", "fpn_norm": "bn", "rpn_num_convs": 2, "box_head_convs": 4},
}


@pytest.fixture(scope="module")
def model():
    m = faster_rcnn_resnet_fpn(2, depth=18, **REF["settings"])
    m.load_state_dict(faster_rcnn_from_torchvision(dw.fill(REF["layout"])), strict=True)
    return m.double().eval()


def test_proposals_equal_torchvision(model):
    images = dw.images()
    with torch.no_grad():
        batch, _ = model.transform(images)
        features = model.neck(model.backbone(batch.tensor))
        proposals, _ = model.rpn(list(features.values()), batch)
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
    with pytest.raises(ValueError, match="no visdet counterpart.*mask_head"):
        faster_rcnn_from_torchvision({"roi_heads.mask_head.mask_fcn1.0.weight": torch.zeros(1)})


@pytest.fixture(scope="module", params=sorted(R50_VARIANTS))
def r50(request):
    """(reference, converted visdet model in float64 eval mode) for torchvision's R50 v1/v2."""
    ref = torch.load(
        DATA_DIR / f"torchvision_faster_rcnn_r50_{request.param}.pt", weights_only=False
    )
    state = dw.fill_detector(ref["layout"])
    assert torchvision_variant(state) == request.param
    m = faster_rcnn_resnet_fpn(90, **R50_VARIANTS[request.param], **ref["settings"])
    m.load_state_dict(faster_rcnn_from_torchvision(state), strict=True)
    return ref, m.double().eval()


def test_r50_detections_equal_torchvision(r50):
    ref, model = r50
    with torch.no_grad():
        detections = model(dw.images())
    for ours, theirs in zip(detections, ref["detections"], strict=True):
        assert len(theirs["boxes"]) > 10
        assert torch.equal(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["boxes"], theirs["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(ours["scores"], theirs["scores"], rtol=0, atol=1e-4)
