"""visdet's Mask R-CNN equals torchvision's on the same weights and input.

The references (tests/reference_data/torchvision_mask_rcnn_r50_{v1,v2}.pt, made by
make_torchvision_mask_rcnn_references.py in a separate venv) hold torchvision's own
``maskrcnn_resnet50_fpn`` and ``maskrcnn_resnet50_fpn_v2`` outputs with every tensor from a
closed formula, run in float64: detections with their class-mask probabilities (28 x 28) and
pasted masks, detections above an unreachable threshold (none), and the training losses
(``loss_mask`` included) for fixed targets with masks, with every anchor and proposal sampled.
Here the same weights go through the family's torchvision converter into the visdet preset.
"""

import sys
from pathlib import Path

import pytest
import torch

from visdet.config.presets import build_detector
from visdet.models.detectors.loss_mode import loss_mode
from visdet.models.families import family_of
from visdet.models.weights.convert.torchvision_mask_rcnn import mask_rcnn_from_torchvision

DATA_DIR = Path(__file__).parents[1] / "reference_data"
sys.path.insert(0, str(DATA_DIR))
import deterministic_weights as dw  # noqa: E402

PRESETS = {"v1": "mask_rcnn_r50_fpn", "v2": "mask_rcnn_r50_fpn_v2"}
LOSSES = {
    "loss_rpn_cls": "loss_objectness",
    "loss_rpn_box": "loss_rpn_box_reg",
    "loss_cls": "loss_classifier",
    "loss_box": "loss_box_reg",
    "loss_mask": "loss_mask",
}


def settings(ref, loss_sampling: bool = False) -> list[str]:
    s = ref["settings"]
    out = [
        f"++model.detector.min_size={s['min_size']}",
        f"++model.detector.max_size={s['max_size']}",
        f"++model.detector.rpn_post_nms_top_n_test={s['rpn_post_nms_top_n_test']}",
        f"++model.detector.box_detections_per_img={s['box_detections_per_img']}",
    ]
    if loss_sampling:
        out += [f"++model.detector.{k}={v}" for k, v in ref["loss_sampling"].items()]
    return out


def converted(ref, preset, loss_sampling=False):
    model = build_detector(preset, 90, settings(ref, loss_sampling))
    state = dw.fill_detector(ref["layout"])
    (converter,) = [c for c in family_of(model).converters if c.matches(state)]
    model.load_state_dict(converter.convert(state), strict=True)
    return model.double().eval()


# v2 (BatchNorm heads, 4 conv box head) runs in make test-full; v1 in the quick suite
@pytest.fixture(
    scope="module",
    params=["v1", pytest.param("v2", marks=pytest.mark.slow)],
)
def case(request):
    ref = torch.load(DATA_DIR / f"torchvision_mask_rcnn_r50_{request.param}.pt",
                     weights_only=False)  # fmt: skip
    return ref, converted(ref, PRESETS[request.param]), request.param


def test_detections_and_masks_equal_torchvision(case):
    ref, model, _ = case
    with torch.no_grad():
        detections = model(dw.images())
    for i, (ours, theirs) in enumerate(zip(detections, ref["detections"], strict=True)):
        assert len(theirs["boxes"]) == 20  # box_detections_per_img: post-processing did work
        assert torch.equal(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["boxes"], theirs["boxes"], rtol=0, atol=1e-4)
        torch.testing.assert_close(ours["scores"], theirs["scores"], rtol=0, atol=1e-4)
        h, w = dw.images()[i].shape[-2:]
        assert ours["masks"].shape == (20, 1, h, w) and ours["masks"].dtype == torch.float64
        pasted = ref["pasted"][i].double()
        assert (ours["masks"][: len(pasted)] - pasted).abs().mean() < 1e-4
        torch.testing.assert_close(ours["masks"].sum(dim=(1, 2, 3)), theirs["mask_sums"],
                                   rtol=1e-4, atol=1e-3)  # fmt: skip


def test_class_mask_probabilities_equal_torchvision(case):
    ref, model, _ = case
    images = dw.images()
    with torch.no_grad():
        batch, _ = model.transform(images)
        features = model.neck(model.backbone(batch.tensor))
        proposals, _ = model.rpn(list(features.values()), batch, None)
        detections, _ = model.roi_heads(features, proposals, batch)
    for ours, theirs in zip(detections, ref["mask_probs"], strict=True):
        assert ours["masks"].shape == theirs.shape == (20, 1, 28, 28)
        assert (ours["masks"] - theirs).abs().mean() < 1e-6
        assert 0.05 < float(theirs.mean()) < 0.95  # not saturated: the comparison means something


def test_no_detections_above_an_unreachable_threshold(case):
    ref, model, _ = case
    thresh, model.roi_heads.score_thresh = model.roi_heads.score_thresh, 1 - 1e-9
    try:
        with torch.no_grad():
            detections = model(dw.images())
    finally:
        model.roi_heads.score_thresh = thresh
    assert [len(d["boxes"]) for d in ref["empty"]] == [0, 0]
    for d, image, theirs in zip(detections, dw.images(), ref["empty"], strict=True):
        assert d["masks"].shape == theirs["masks_shape"] == (0, 1, *image.shape[-2:])


# every proposal sampled: v2 runs 4 conv+BN box-head layers on ~4000 proposals in float64
# (50 s per case); the quick suite runs v1 with objects in both images, make test-full the rest
LOSS_CASES = [
    pytest.param("v1", "losses", id="v1-losses"),
    *(pytest.param(v, k, marks=pytest.mark.slow, id=f"{v}-{k}")
      for v, k in (("v1", "losses_one_empty"), ("v2", "losses"), ("v2", "losses_one_empty"))),
]  # fmt: skip


@pytest.mark.parametrize(("variant", "key"), LOSS_CASES)
def test_training_losses_equal_torchvision(variant, key):
    ref = torch.load(DATA_DIR / f"torchvision_mask_rcnn_r50_{variant}.pt", weights_only=False)
    model = converted(ref, PRESETS[variant], loss_sampling=True)
    targets = ref["targets"]
    if key == "losses_one_empty":
        targets = [targets[0], {"boxes": torch.zeros(0, 4, dtype=torch.float64),
                                "labels": torch.zeros(0, dtype=torch.int64),
                                "masks": torch.zeros(0, 96, 72, dtype=torch.uint8)}]  # fmt: skip
    with loss_mode(model), torch.no_grad():
        losses = model(dw.images(), targets)
    assert set(losses) == set(LOSSES)
    for ours, theirs in LOSSES.items():
        expected = ref[key][theirs]
        # torchvision computes its RPN objectness loss in float32 (float32 labels)
        rtol = 1e-7 if expected.dtype == torch.float64 else 1e-6
        torch.testing.assert_close(losses[ours], expected.double(), rtol=rtol, atol=1e-9)
    assert ref[key]["loss_mask"] > 0.1


def test_from_checkpoint_takes_a_torchvision_state_dict(tmp_path):
    from visdet.inference import Detector

    ref = torch.load(DATA_DIR / "torchvision_mask_rcnn_r50_v1.pt", weights_only=False)
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in dw.fill_detector(ref["layout"]).items()}  # fmt: skip
    path = tmp_path / "maskrcnn_resnet50_fpn_coco.pth"
    torch.save(state, path)
    det = Detector.from_checkpoint(path, model="mask_rcnn_r50_fpn", num_classes=90)
    assert type(det.detector).__name__ == "MaskRCNN"
    key = "roi_heads.mask_predictor.mask_fcn_logits.weight"
    torch.testing.assert_close(det.detector.state_dict()[key], state[key])


def test_old_mask_head_names_and_other_files_are_handled():
    ref = torch.load(DATA_DIR / "torchvision_mask_rcnn_r50_v1.pt", weights_only=False)
    state = dw.fill_detector(ref["layout"])
    old = {}
    for k, v in state.items():
        for i in range(4):
            k = k.replace(f"roi_heads.mask_head.{i}.0.", f"roi_heads.mask_head.mask_fcn{i + 1}.")
        old[k] = v
    assert any("mask_fcn1" in k for k in old)
    assert mask_rcnn_from_torchvision(old).keys() == mask_rcnn_from_torchvision(state).keys()
    no_masks = {k: v for k, v in state.items() if not k.startswith("roi_heads.mask_")}
    with pytest.raises(ValueError, match="no roi_heads.mask_predictor"):
        mask_rcnn_from_torchvision(no_masks)
    with pytest.raises(ValueError, match="mask_head.9.2.weight.*no visdet counterpart"):
        mask_rcnn_from_torchvision({**state, "roi_heads.mask_head.9.2.weight": torch.zeros(1)})
