"""visdet's one-stage detectors equal torchvision's on the same weights and input.

The references (tests/reference_data/torchvision_{retinanet_r50_v1,retinanet_r50_v2,
fcos_r50}.pt, made by make_torchvision_dense_detector_references.py in a separate venv) hold
torchvision's own ``retinanet_resnet50_fpn``, ``retinanet_resnet50_fpn_v2`` and
``fcos_resnet50_fpn`` outputs with every tensor from a closed formula, run in float64: head
outputs, detections (eval), detections above an unreachable threshold (none), and training
losses for fixed targets (one variant with an image without boxes). Here the same weights go
through the family's torchvision converter into the visdet preset, built from its config.
"""

import sys
from pathlib import Path

import pytest
import torch

from visdet.config.presets import build_detector
from visdet.models.detectors.loss_mode import loss_mode
from visdet.models.families import family_of

DATA_DIR = Path(__file__).parents[1] / "reference_data"
sys.path.insert(0, str(DATA_DIR))
import deterministic_weights as dw  # noqa: E402

# reference file -> (visdet preset, visdet loss name -> torchvision loss name)
CASES = {
    "retinanet_r50_v1": ("retinanet_r50_fpn", {"loss_cls": "classification",
                                               "loss_box": "bbox_regression"}),
    "retinanet_r50_v2": ("retinanet_r50_fpn_v2", {"loss_cls": "classification",
                                                  "loss_box": "bbox_regression"}),
    "fcos_r50": ("fcos_r50_fpn", {"loss_cls": "classification", "loss_box": "bbox_regression",
                                  "loss_ctr": "bbox_ctrness"}),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    """(reference, converted visdet model in float64 eval mode, loss names)."""
    ref = torch.load(DATA_DIR / f"torchvision_{request.param}.pt", weights_only=False)
    preset, names = CASES[request.param]
    s = ref["settings"]
    model = build_detector(preset, 90, [f"model.detector.min_size={s['min_size']}",
                                        f"+model.detector.max_size={s['max_size']}"])  # fmt: skip
    state = dw.fill_dense_detector(ref["layout"], ref["num_anchors"], 91)
    (converter,) = [c for c in family_of(model).converters if c.matches(state)]
    model.load_state_dict(converter.convert(state), strict=True)
    return ref, model.double().eval(), names


def test_head_outputs_equal_torchvision(case):
    ref, model, _ = case
    with torch.no_grad():
        ours = model.head_outputs(dw.images())
    head = ref["head"]
    torch.testing.assert_close(ours["cls_logits"][:, ::16], head["cls_logits_every_16th"],
                               rtol=0, atol=1e-6)  # fmt: skip
    torch.testing.assert_close(ours["cls_logits"].sum(-1), head["cls_logits_sums"],
                               rtol=0, atol=1e-6)  # fmt: skip
    for key in ("bbox_regression", "bbox_ctrness"):
        if key in head:
            torch.testing.assert_close(ours[key], head[key], rtol=0, atol=1e-6)


def test_detections_equal_torchvision(case):
    ref, model, _ = case
    with torch.no_grad():
        detections = model(dw.images())
    for ours, theirs in zip(detections, ref["detections"], strict=True):
        assert len(theirs["boxes"]) > 10
        assert torch.equal(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["boxes"], theirs["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(ours["scores"], theirs["scores"], rtol=0, atol=1e-4)


def test_no_detections_above_an_unreachable_threshold(case):
    ref, model, _ = case
    thresh, model.score_thresh = model.score_thresh, 1 - 1e-9
    try:
        with torch.no_grad():
            detections = model(dw.images())
    finally:
        model.score_thresh = thresh
    assert [len(d["boxes"]) for d in ref["empty"]] == [0, 0]
    for d in detections:
        assert d["boxes"].shape == (0, 4) and d["scores"].shape == (0,)


@pytest.mark.parametrize("key", ["losses", "losses_one_empty"])
def test_training_losses_equal_torchvision(case, key):
    ref, model, names = case
    targets = ref["targets"]
    if key == "losses_one_empty":
        targets = [targets[0], {"boxes": torch.zeros(0, 4, dtype=torch.float64),
                                "labels": torch.zeros(0, dtype=torch.int64)}]  # fmt: skip
    with loss_mode(model), torch.no_grad():
        losses = model(dw.images(), targets)
    assert set(losses) == set(names)
    for ours, theirs in names.items():
        torch.testing.assert_close(losses[ours], ref[key][theirs], rtol=1e-7, atol=1e-9)
