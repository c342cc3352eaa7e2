"""RetinaNet's training losses against stored outputs of torchvision (anchor matching and
RetinaNetHead.compute_loss, box losses l1 and giou, an image without boxes), and a
brute-force check of the focal-loss normalisation."""

from pathlib import Path

import pytest
import torch

from visdet.models.heads.retinanet_loss import box_loss, match_anchors, retinanet_losses
from visdet.ops import BoxCoder, Matcher, sigmoid_focal_loss

REFS = torch.load(
    Path(__file__).parents[1] / "reference_data" / "torchvision_retinanet_loss_references.pt",
    weights_only=True,
)


def test_matching_equals_torchvisions():
    matched = match_anchors(
        REFS["anchors"], [t["boxes"] for t in REFS["targets"]], Matcher(0.5, 0.4, True)
    )
    for got, ref in zip(matched, REFS["matched_idxs"], strict=True):
        assert torch.equal(got, ref)
    assert (matched[0] >= 0).sum() >= 3 and (matched[1] == -1).all()


@pytest.mark.parametrize("kind", ["l1", "giou"])
def test_losses_equal_torchvisions(kind):
    losses = retinanet_losses(
        REFS["cls_logits"], REFS["bbox_regression"], REFS["anchors"], REFS["targets"],
        REFS["matched_idxs"], BoxCoder((1.0, 1.0, 1.0, 1.0)), kind,
    )  # fmt: skip
    for name in ("classification", "bbox_regression"):
        torch.testing.assert_close(losses[name], REFS[f"{kind}_{name}"], rtol=0, atol=1e-12)


def test_classification_loss_brute_force():
    """Image by image: focal loss over non-ignored anchors / foreground count, averaged."""
    matched = REFS["matched_idxs"]
    total = 0.0
    for logits, t, m in zip(REFS["cls_logits"], REFS["targets"], matched, strict=True):
        target = torch.zeros_like(logits)
        for i in range(len(m)):
            if m[i] >= 0:
                target[i, t["labels"][m[i]] - 1] = 1.0
        keep = m != -2
        total += sigmoid_focal_loss(logits[keep], target[keep], reduction="sum") / max(
            1, int((m >= 0).sum())
        )
    losses = retinanet_losses(REFS["cls_logits"], REFS["bbox_regression"], REFS["anchors"],
                              REFS["targets"], matched, BoxCoder())  # fmt: skip
    torch.testing.assert_close(losses["classification"], total / 2)


def test_unknown_box_loss_is_named():
    with pytest.raises(ValueError, match=r"box loss must be one of \['l1', 'smooth_l1'"):
        box_loss("iou", BoxCoder(), torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1, 4))
