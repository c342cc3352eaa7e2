"""Mask R-CNN's mask branch: its layout (torchvision's keys), the mask targets against a
brute-force crop-and-average, the loss against its formula and its empty case."""

import math

import pytest
import torch

from visdet.models.heads.mask_head import (
    MaskHead,
    MaskPredictor,
    class_mask_probabilities,
    mask_loss,
    mask_targets,
)


def test_layout_and_shapes():
    head = MaskHead(16, (8, 8), norm="bn")
    predictor = MaskPredictor(8, 4, num_classes=3)
    keys = set(head.state_dict()) | {f"p.{k}" for k in predictor.state_dict()}
    assert {"0.0.weight", "0.1.running_var", "1.0.weight", "p.conv5_mask.weight",
            "p.mask_fcn_logits.bias"} <= keys and "0.0.bias" not in keys  # fmt: skip
    assert "0.0.bias" in MaskHead(16, (8,), norm="none").state_dict()
    out = predictor(head(torch.rand(5, 16, 14, 14)))
    assert out.shape == (5, 4, 28, 28)  # 3 classes + background
    with pytest.raises(ValueError, match="mask head norm must be 'none' or 'bn'"):
        MaskHead(16, (8,), norm="gn")


def brute_force_target(gt, box, size):
    """RoIAlign's rule (not aligned, spatial scale 1, adaptive sampling): each bin the mean of
    ceil(bin side) x ceil(bin side) bilinear samples, pixel i's value sitting at i."""
    x0, y0, x1, y1 = box
    bw, bh = max(x1 - x0, 1.0) / size, max(y1 - y0, 1.0) / size
    sx, sy = math.ceil(bw), math.ceil(bh)
    h, w = gt.shape

    def at(y, x):
        y, x = min(max(y, 0.0), h - 1), min(max(x, 0.0), w - 1)
        ya, xa = int(y), int(x)
        yb, xb = min(ya + 1, h - 1), min(xa + 1, w - 1)
        dy, dx = y - ya, x - xa
        return ((1 - dy) * (1 - dx) * gt[ya, xa] + (1 - dy) * dx * gt[ya, xb]
                + dy * (1 - dx) * gt[yb, xa] + dy * dx * gt[yb, xb])  # fmt: skip

    out = torch.zeros(size, size, dtype=torch.float64)
    for i in range(size):
        for j in range(size):
            vals = [at(y0 + i * bh + (a + 0.5) * bh / sy, x0 + j * bw + (b + 0.5) * bw / sx)
                    for a in range(sy) for b in range(sx)]  # fmt: skip
            out[i, j] = sum(vals) / len(vals)
    return out


def test_mask_targets_equal_the_brute_force_crop_of_the_matched_mask():
    gt = torch.zeros(2, 20, 20, dtype=torch.float64)
    gt[0, 4:12, 4:12] = 1  # an 8 x 8 square
    gt[1, :, 10:] = 1  # the right half
    boxes = torch.tensor([[4.0, 4, 12, 12], [0, 0, 20, 20], [3.5, 2.2, 15.1, 17.9]],
                         dtype=torch.float64)  # fmt: skip
    matched = torch.tensor([0, 1, 1])
    targets = mask_targets(gt.to(torch.uint8), boxes, matched, 4)
    assert targets.shape == (3, 4, 4)
    for k in range(3):
        expected = brute_force_target(gt[matched[k]], boxes[k].tolist(), 4)
        torch.testing.assert_close(targets[k], expected, rtol=0, atol=1e-12)
    assert torch.all(targets[1][:, 0] == 0) and torch.all(targets[1][:, 3] == 1)


def test_loss_is_the_mean_binary_cross_entropy_of_the_class_channel():
    logits = torch.zeros(2, 3, 2, 2)
    logits[0, 1] = 2.0
    logits[1, 2] = -1.0
    targets = torch.tensor([[[1.0, 0], [1, 1]], [[0, 0], [0, 1]]])
    labels = torch.tensor([1, 2])

    def bce(z, t):
        return -(
            t * math.log(1 / (1 + math.exp(-z))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-z)))
        )

    expected = sum(bce(2.0, t) for t in (1, 0, 1, 1)) + sum(bce(-1.0, t) for t in (0, 0, 0, 1))
    assert mask_loss(logits, labels, targets).item() == pytest.approx(expected / 8)
    probs = class_mask_probabilities(logits, labels)
    assert probs.shape == (2, 1, 2, 2)
    torch.testing.assert_close(probs[1, 0], torch.full((2, 2), 1 / (1 + math.e)))


def test_no_positive_rois_give_a_zero_loss_with_gradients():
    logits = torch.rand(0, 3, 28, 28, requires_grad=True)
    loss = mask_loss(logits, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 28, 28))
    assert loss.item() == 0.0
    loss.backward()


def test_mask_targets_in_chunks_equal_all_masks_at_once():
    """More objects than MASK_TARGET_CHUNK: each RoI still reads its own matched mask."""
    from visdet.models.heads.mask_head import MASK_TARGET_CHUNK
    from visdet.ops import roi_align

    g = torch.Generator().manual_seed(0)
    count = 2 * MASK_TARGET_CHUNK + 5
    gt = (torch.rand(count, 24, 32, generator=g) > 0.5).to(torch.uint8)
    xy = torch.rand(70, 2, generator=g) * 20
    boxes = torch.cat([xy, xy + 2 + torch.rand(70, 2, generator=g) * 10], dim=1)
    matched = torch.randint(0, count, (70,), generator=g)
    rois = torch.cat([matched[:, None].float(), boxes], dim=1)
    at_once = roi_align(gt[:, None].float(), rois, (7, 7), 1.0)[:, 0]
    assert torch.equal(mask_targets(gt, boxes, matched, 7), at_once)
    assert mask_targets(gt, boxes[:0], matched[:0], 7).shape == (0, 7, 7)
