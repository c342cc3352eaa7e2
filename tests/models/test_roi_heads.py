import math

import pytest
import torch

from visdet.models import FastRCNNPredictor, MultiScaleRoIAlign, RoIHeads, TwoMLPHead
from visdet.models.heads import map_levels
from visdet.models.image_batch import ImageBatch
from visdet.ops import roi_align


def make_heads(num_classes=3, **kw) -> RoIHeads:
    return RoIHeads(
        MultiScaleRoIAlign(("p2", "p3"), 5, 2),
        TwoMLPHead(4 * 25, 32),
        FastRCNNPredictor(32, num_classes),
        **kw,
    )


def features():
    return {"p2": torch.rand(2, 4, 16, 16), "p3": torch.rand(2, 4, 8, 8)}


def test_level_mapping_formula():
    sides = torch.tensor([10.0, 111.9, 112.0, 224.0, 447.0, 448.0, 5000.0])
    boxes = torch.stack([torch.zeros(7), torch.zeros(7), sides, sides], 1)
    expected = [
        min(5, max(2, math.floor(4 + math.log2(s / 224) + 1e-6))) - 2 for s in sides.tolist()
    ]
    assert map_levels(boxes, 2, 5).tolist() == expected == [0, 0, 1, 2, 2, 3, 3]


def test_multiscale_pooling_uses_the_mapped_level():
    pool = MultiScaleRoIAlign(("p2", "p3", "p4", "p5"), 3, 2, canonical_scale=32)
    feats = {f"p{k}": torch.rand(1, 2, 128 // 2**k, 128 // 2**k) for k in range(2, 6)}
    boxes = [torch.tensor([[0.0, 0, 16, 16], [10, 10, 42, 42], [0, 0, 64, 64], [0, 0, 128, 128]])]
    out = pool(feats, boxes, (128, 128))
    for i, level in enumerate([2, 3, 4, 5]):  # sqrt(area)/32: 0.5, 1, 2, 4 -> k = 3, 4, 5, 6
        level = min(max(level + 1, 2), 5)
        ref = roi_align(feats[f"p{level}"], [boxes[0][i : i + 1]], 3, 1 / 2**level, 2)
        torch.testing.assert_close(out[i : i + 1], ref)


def test_losses_with_empty_ground_truth():
    heads = make_heads().train()
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2
    props = [torch.tensor([[0.0, 0, 20, 20], [10, 10, 40, 50]]), torch.zeros(0, 4)]
    dets, losses = heads(
        features(), props, ImageBatch(torch.zeros(2, 3, 64, 64), [(64, 64)] * 2), targets
    )
    assert dets == [] and losses["loss_box"].item() == 0.0
    assert torch.isfinite(losses["loss_cls"]) and losses["loss_cls"] > 0
    sum(losses.values()).backward()
    assert torch.isfinite(heads.box_predictor.cls_score.weight.grad).all()


def test_losses_match_hand_computation_for_one_positive():
    heads = make_heads(num_classes=2, batch_size_per_image=8).train()
    gt = {"boxes": torch.tensor([[8.0, 8, 40, 40]]), "labels": torch.tensor([2])}
    props, labels, reg, matched = heads.sample_proposals([torch.tensor([[30.0, 30, 60, 60]])],
                                                         [gt])  # fmt: skip
    assert matched[0].tolist() == [0, 0]  # one gt box: every proposal's index is 0
    # the proposal (IoU 0.06) is background; the added gt box is foreground with zero deltas
    assert sorted(labels[0].tolist()) == [0, 2]
    fg = labels[0] == 2
    assert torch.allclose(reg[0][fg], torch.zeros(1, 4))
    logits = torch.zeros(2, 3)
    deltas = torch.zeros(2, 12)
    deltas[fg.nonzero()[0, 0], 8:12] = torch.tensor([1.0, 0, 0, 0])  # class-2 slot
    losses = heads.losses(logits, deltas, labels[0], reg[0])
    assert losses["loss_cls"].item() == pytest.approx(math.log(3))
    assert losses["loss_box"].item() == pytest.approx((1 - 0.5 / 9) / 2)


def test_postprocess_threshold_nms_and_limit():
    heads = make_heads(num_classes=2, score_thresh=0.3, nms_thresh=0.5, detections_per_img=2).eval()
    proposals = [torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30], [0, 0, 5, 5]])]
    logits = torch.log(
        torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.7, 0.2], [0.1, 0.2, 0.7], [0.8, 0.1, 0.1]])
    )
    dets = heads.postprocess(logits, torch.zeros(4, 12), proposals, [(64, 64)])[0]
    # class 1: boxes 0 and 1 overlap (IoU 0.91) -> keep 0 (0.8); class 2: box 2 (0.7)
    assert dets["labels"].tolist() == [1, 2]
    torch.testing.assert_close(dets["scores"], torch.tensor([0.8, 0.7]))
    assert dets["boxes"].tolist() == [[0.0, 0, 10, 10], [20, 20, 30, 30]]
