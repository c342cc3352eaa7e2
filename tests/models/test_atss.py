"""ATSS's sample selection against a brute-force loop of MMDetection's ATSSAssigner steps,
its losses against their formulas written out, and its head's layout."""

import math

import pytest
import torch

from visdet.models.heads.atss_head import ATSSHead
from visdet.models.heads.atss_loss import atss_assign, atss_losses, centerness_targets
from visdet.ops import AnchorGenerator, BoxCoder, sigmoid_focal_loss


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def brute_force_assign(anchors, counts, gts, topk):
    anchors, gts = anchors.tolist(), gts.tolist()
    centre = [((a[0] + a[2]) / 2, (a[1] + a[3]) / 2) for a in anchors]
    best, match = [-math.inf] * len(anchors), [-1] * len(anchors)
    for g, box in enumerate(gts):
        gc = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        candidates, start = [], 0
        for count in counts:
            ranked = sorted(range(start, start + count), key=lambda i: math.dist(centre[i], gc))
            candidates += ranked[:topk]
            start += count
        ious = [_iou(anchors[i], box) for i in candidates]
        mean = sum(ious) / len(ious)
        std = math.sqrt(sum((v - mean) ** 2 for v in ious) / (len(ious) - 1))
        for i, v in zip(candidates, ious, strict=True):
            x, y = centre[i]
            inside = min(x - box[0], y - box[1], box[2] - x, box[3] - y) > 0.01
            if v >= mean + std and inside and v > best[i]:
                best[i], match[i] = v, g
    return match


EMPTY = {
    "boxes": torch.zeros(0, 4, dtype=torch.float64),
    "labels": torch.zeros(0, dtype=torch.int64),
}


def _log_sigmoid(z: float) -> float:
    return math.log(1 / (1 + math.exp(-z)))


def _anchors(image=128):
    generator = AnchorGenerator([(32,), (64,), (128,)], [(1.0,)] * 3, round_anchors=False)
    per_level = generator((image, image), [(16, 16), (8, 8), (4, 4)], torch.float64)
    return torch.cat(per_level), [len(a) for a in per_level]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assignment_equals_the_brute_force_loop(seed):
    anchors, counts = _anchors()
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(5, 2, generator=g, dtype=torch.float64) * 90
    gts = torch.cat([xy, xy + 6 + torch.rand(5, 2, generator=g, dtype=torch.float64) * 60], 1)
    got = atss_assign(anchors, counts, gts, topk=9)
    assert got.tolist() == brute_force_assign(anchors, counts, gts, 9)
    assert (got >= 0).sum() >= 5  # every box has positives here


def test_no_boxes_assigns_background_and_small_levels_take_all_their_anchors():
    anchors, counts = _anchors()
    assert atss_assign(anchors, counts, torch.zeros(0, 4, dtype=torch.float64)).eq(-1).all()
    box = torch.tensor([[40.0, 40, 90, 100]], dtype=torch.float64)
    # topk above a level's anchor count: all of that level's anchors are candidates
    assert atss_assign(anchors, counts, box, topk=20).tolist() == brute_force_assign(
        anchors, counts, box, 20
    )


def test_losses_equal_their_formulas():
    anchors, counts = _anchors()
    g = torch.Generator().manual_seed(3)
    n, k = anchors.shape[0], 3
    outputs = {
        "cls_logits": torch.randn(2, n, k, generator=g, dtype=torch.float64),
        "bbox_regression": torch.randn(2, n, 4, generator=g, dtype=torch.float64) * 0.1,
        "bbox_ctrness": torch.randn(2, n, 1, generator=g, dtype=torch.float64),
    }
    targets = [
        {"boxes": torch.tensor([[10.0, 12, 60, 70], [70, 20, 120, 90]], dtype=torch.float64),
         "labels": torch.tensor([1, 3])},
        EMPTY,
    ]  # fmt: skip
    matched = [atss_assign(anchors, counts, t["boxes"]) for t in targets]
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    got = atss_losses(outputs, anchors, targets, matched, coder)
    fg = torch.where(matched[0] >= 0)[0].tolist()
    assert len(fg) > 2
    onehot = torch.zeros(2, n, k, dtype=torch.float64)
    for i in fg:
        onehot[0, i, targets[0]["labels"][matched[0][i]] - 1] = 1
    expected_cls = sigmoid_focal_loss(outputs["cls_logits"], onehot, reduction="sum") / len(fg)
    weighted, weights, bce = 0.0, 0.0, 0.0
    for i in fg:
        box = targets[0]["boxes"][matched[0][i]].tolist()
        a = anchors[i].tolist()
        cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
        l, t, r, b = cx - box[0], cy - box[1], box[2] - cx, box[3] - cy
        c = math.sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))
        p = coder.decode(outputs["bbox_regression"][0, i : i + 1], anchors[i : i + 1])[0].tolist()
        iou = _iou(p, box)
        hull = (max(p[2], box[2]) - min(p[0], box[0])) * (max(p[3], box[3]) - min(p[1], box[1]))
        iw = max(0.0, min(p[2], box[2]) - max(p[0], box[0]))
        ih = max(0.0, min(p[3], box[3]) - max(p[1], box[1]))
        union = (p[2] - p[0]) * (p[3] - p[1]) + (box[2] - box[0]) * (box[3] - box[1]) - iw * ih
        giou = iou - (hull - union) / hull
        weighted += (1 - giou) * c
        weights += c
        z = outputs["bbox_ctrness"][0, i, 0].item()
        bce += -(c * _log_sigmoid(z) + (1 - c) * _log_sigmoid(-z))
    assert got["classification"].item() == pytest.approx(expected_cls.item(), rel=1e-12)
    expected_box = 2 * weighted / max(1.0, weights)
    assert got["bbox_regression"].item() == pytest.approx(expected_box, rel=1e-6)
    assert got["bbox_ctrness"].item() == pytest.approx(bce / len(fg), rel=1e-9)


def test_no_positives_gives_zero_box_losses_with_gradients():
    anchors, counts = _anchors()
    n = anchors.shape[0]
    widths = {"cls_logits": 2, "bbox_regression": 4, "bbox_ctrness": 1}
    outputs = {
        k: torch.randn(1, n, c, dtype=torch.float64, requires_grad=True) for k, c in widths.items()
    }
    empty = [EMPTY]
    matched = [atss_assign(anchors, counts, empty[0]["boxes"])]
    losses = atss_losses(outputs, anchors, empty, matched, BoxCoder((10.0, 10.0, 5.0, 5.0)))
    assert losses["bbox_regression"].item() == 0 and losses["bbox_ctrness"].item() == 0
    sum(losses.values()).backward()
    assert outputs["bbox_regression"].grad is not None


def test_centerness_of_a_centred_anchor_is_one():
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 4, 4]])
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 8, 8]])
    c = centerness_targets(anchors, boxes)
    assert c[0].item() == pytest.approx(1.0)
    assert c[1].item() == pytest.approx(math.sqrt(1 / 3 * 1 / 3))


def test_head_shapes_and_per_level_scales():
    head = ATSSHead(32, 1, 4, num_convs=1, num_levels=2)
    feats = [torch.randn(2, 32, 8, 8), torch.randn(2, 32, 4, 4)]
    out = head(feats)
    assert out["cls_logits"].shape == (2, 80, 4) and out["bbox_regression"].shape == (2, 80, 4)
    assert out["bbox_ctrness"].shape == (2, 80, 1)
    with torch.no_grad():
        head.scales[1] = 2.0
    doubled = head(feats)["bbox_regression"]
    torch.testing.assert_close(doubled[:, 64:], 2 * out["bbox_regression"][:, 64:])
    torch.testing.assert_close(doubled[:, :64], out["bbox_regression"][:, :64])
    with pytest.raises(ValueError, match="2 levels, got 1"):
        head(feats[:1])
