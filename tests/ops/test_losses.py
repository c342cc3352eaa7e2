"""Detection losses against brute-force references (the formulas, element by element, in
Python floats), with empty, disjoint, identical, nested and integer boxes, every reduction,
gradients and the bad-argument messages; and against stored outputs of real torchvision
(tests/reference_data/make_torchvision_loss_references.py) when the file is there."""

import math
from pathlib import Path

import pytest
import torch

from visdet.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

EPS = 1e-7
REFERENCES = Path(__file__).parents[1] / "reference_data" / "torchvision_loss_references.pt"


def pair_terms(a, b):
    """Python-float pieces of one box pair: intersection, union, enclosing w/h, centre
    distance squared."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih if iw > 0 and ih > 0 else 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    d2 = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
    return inter, union, cw, ch, d2


def giou_ref(a, b):
    inter, union, cw, ch, _ = pair_terms(a, b)
    return 1 - (inter / (union + EPS) - (cw * ch - union) / (cw * ch + EPS))


def diou_ref(a, b):
    inter, union, cw, ch, d2 = pair_terms(a, b)
    return 1 - inter / (union + EPS) + d2 / (cw**2 + ch**2 + EPS)


def ciou_ref(a, b):
    inter, union, *_ = pair_terms(a, b)
    iou = inter / (union + EPS)
    v = 4 / math.pi**2 * (math.atan((b[2] - b[0]) / (b[3] - b[1]))
                          - math.atan((a[2] - a[0]) / (a[3] - a[1]))) ** 2  # fmt: skip
    return diou_ref(a, b) + v / (1 - iou + v + EPS) * v


def box_pairs():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=g, dtype=torch.float64) * 50
    wh = torch.rand(40, 2, generator=g, dtype=torch.float64) * 30 + 0.5
    boxes1 = torch.cat([xy, xy + wh], 1)
    boxes2 = boxes1 + torch.randn(40, 4, generator=g, dtype=torch.float64) * 4
    boxes2[:, 2:] = torch.maximum(boxes2[:, 2:], boxes2[:, :2] + 0.5)
    special = torch.tensor(
        [
            [[0, 0, 10, 10], [0, 0, 10, 10]],  # identical
            [[0, 0, 10, 10], [20, 20, 30, 40]],  # disjoint
            [[0, 0, 10, 10], [10, 0, 20, 10]],  # touching
            [[0, 0, 100, 100], [40, 40, 60, 60]],  # nested
            [[0, 0, 10, 10], [2, 0, 12, 10]],  # shifted
        ],
        dtype=torch.float64,
    )
    return torch.cat([boxes1, special[:, 0]]), torch.cat([boxes2, special[:, 1]])


@pytest.mark.parametrize(
    ("loss", "reference"),
    [
        (generalized_box_iou_loss, giou_ref),
        (distance_box_iou_loss, diou_ref),
        (complete_box_iou_loss, ciou_ref),
    ],
)
def test_box_losses_equal_the_formulas(loss, reference):
    boxes1, boxes2 = box_pairs()
    expected = torch.tensor(
        [reference(a.tolist(), b.tolist()) for a, b in zip(boxes1, boxes2, strict=True)],
        dtype=torch.float64,
    )
    got = loss(boxes1, boxes2)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss(boxes1, boxes2, reduction="sum"), expected.sum())
    torch.testing.assert_close(loss(boxes1, boxes2, reduction="mean"), expected.mean())
    # float32 agrees to float32 precision; any leading shape works
    got32 = loss(boxes1.float().view(5, 9, 4), boxes2.float().view(5, 9, 4))
    torch.testing.assert_close(got32.double().flatten(), expected, rtol=1e-5, atol=1e-5)
    assert got[-5] == pytest.approx(0.0, abs=1e-6)  # identical boxes: no loss


def test_known_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    far = torch.tensor([[20.0, 20, 30, 40]])
    # disjoint: IoU 0, enclosing 30 x 40 = 1200, union 300 -> GIoU loss 1 + 900/1200
    assert generalized_box_iou_loss(a, far).item() == pytest.approx(1.75, abs=1e-6)
    # centres (5, 5) and (25, 30): d^2 = 400 + 625, c^2 = 30^2 + 40^2
    assert distance_box_iou_loss(a, far).item() == pytest.approx(1 + 1025 / 2500, abs=1e-6)


@pytest.mark.parametrize(
    "loss", [generalized_box_iou_loss, distance_box_iou_loss, complete_box_iou_loss]
)
def test_box_losses_on_empty_integer_and_bad_input(loss):
    empty = torch.zeros(0, 4)
    assert loss(empty, empty).shape == (0,)
    mean = loss(empty.requires_grad_(), empty, reduction="mean")
    assert mean.item() == 0.0 and mean.requires_grad  # keeps the graph, as torchvision
    assert loss(empty, empty, reduction="sum").item() == 0.0
    ints = torch.tensor([[0, 0, 10, 10]]), torch.tensor([[5, 0, 15, 10]])
    floats = loss(ints[0].float(), ints[1].float())
    assert loss(*ints).dtype == torch.float32 and torch.equal(loss(*ints), floats)
    with pytest.raises(ValueError, match=r"reduction must be one of \['none', 'mean', 'sum'\]"):
        loss(empty, empty, reduction="avg")
    with pytest.raises(ValueError, match=r"boxes1 and boxes2 must both be \[\.\.\., 4\]"):
        loss(torch.zeros(3, 4), torch.zeros(2, 4))


@pytest.mark.parametrize(
    "loss", [generalized_box_iou_loss, distance_box_iou_loss, complete_box_iou_loss]
)
def test_box_loss_gradients_are_finite_and_pull_boxes_together(loss):
    target = torch.tensor([[10.0, 10, 30, 40], [0, 0, 5, 5]])
    boxes = torch.tensor([[12.0, 8, 35, 38], [50, 50, 60, 70]], requires_grad=True)
    loss(boxes, target, reduction="sum").backward()
    assert torch.isfinite(boxes.grad).all()
    step = boxes.detach() - 1.0 * boxes.grad
    assert loss(step, target).sum() < loss(boxes.detach(), target).sum()


def focal_ref(x, t, alpha, gamma):
    p = 1 / (1 + math.exp(-x))
    ce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss *= alpha * t + (1 - alpha) * (1 - t)
    return loss


@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (0.5, 0.0), (-1, 1.5), (1.0, 3.0)])
def test_focal_loss_equals_the_formula(alpha, gamma):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 7, generator=g, dtype=torch.float64) * 3
    t = (torch.rand(6, 7, generator=g) > 0.7).double()
    t[0, :3] = torch.tensor([0.3, 0.5, 0.9], dtype=torch.float64)  # soft targets
    expected = torch.tensor(
        [[focal_ref(a, b, alpha, gamma) for a, b in zip(r, s, strict=True)]
         for r, s in zip(x.tolist(), t.tolist(), strict=True)],
        dtype=torch.float64,
    )  # fmt: skip
    got = sigmoid_focal_loss(x, t, alpha, gamma)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sigmoid_focal_loss(x, t, alpha, gamma, "sum"), expected.sum())
    torch.testing.assert_close(sigmoid_focal_loss(x, t, alpha, gamma, "mean"), expected.mean())
    if gamma == 0 and alpha == 0.5:  # plain BCE, halved
        bce = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
        torch.testing.assert_close(got, bce / 2)


def test_focal_loss_extremes_and_bad_arguments():
    x = torch.tensor([40.0, -40.0, 0.0])
    t = torch.tensor([1.0, 0.0, 1.0])
    out = sigmoid_focal_loss(x, t)
    assert torch.isfinite(out).all() and out[:2].max() < 1e-30  # confident and right: ~0
    assert out[2].item() == pytest.approx(0.25 * math.log(2) * 0.25)
    assert sigmoid_focal_loss(torch.zeros(0, 3), torch.zeros(0, 3)).shape == (0, 3)
    with pytest.raises(ValueError, match=r"focal loss alpha must be in \[0, 1\] \(or -1"):
        sigmoid_focal_loss(x, t, alpha=1.5)
    with pytest.raises(ValueError, match="focal loss gamma must be >= 0, got -1"):
        sigmoid_focal_loss(x, t, gamma=-1)
    with pytest.raises(ValueError, match="inputs and targets must have the same shape"):
        sigmoid_focal_loss(x, t[:2])
    with pytest.raises(ValueError, match="reduction must be one of"):
        sigmoid_focal_loss(x, t, reduction="max")


@pytest.mark.skipif(not REFERENCES.is_file(), reason="torchvision loss reference file absent")
def test_losses_equal_stored_torchvision_outputs():
    refs = torch.load(REFERENCES, weights_only=True)
    for name, fn in (
        ("generalized_box_iou_loss", generalized_box_iou_loss),
        ("distance_box_iou_loss", distance_box_iou_loss),
        ("complete_box_iou_loss", complete_box_iou_loss),
    ):
        for reduction in ("none", "sum", "mean"):
            got = fn(refs["boxes1"], refs["boxes2"], reduction=reduction)
            torch.testing.assert_close(got, refs[f"{name}_{reduction}"], rtol=0, atol=1e-12)
        # gradient w.r.t. the first boxes
        boxes = refs["boxes1"].clone().requires_grad_()
        fn(boxes, refs["boxes2"], reduction="sum").backward()
        torch.testing.assert_close(boxes.grad, refs[f"{name}_grad"], rtol=0, atol=1e-12)
    for key, (alpha, gamma) in refs["focal_settings"].items():
        got = sigmoid_focal_loss(refs["logits"], refs["targets"], alpha, gamma)
        torch.testing.assert_close(got, refs[f"sigmoid_focal_loss_{key}"], rtol=0, atol=1e-12)
