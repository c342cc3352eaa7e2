"""MixUp: the weighted sum of the image and the fitted partner; the boxes of both."""

import torch

from visdet.data import DetectionAugment
from visdet.data.mixup import draw_lambda, mixup


def test_mixed_pixels_follow_the_formula_and_partner_boxes_are_scaled():
    image = torch.rand(3, 40, 60)
    target = {"boxes": torch.tensor([[1.0, 2, 10, 12]]), "labels": torch.tensor([1]), "x": 7}
    partner = torch.ones(3, 80, 60)  # scaled by 0.5 to 40x30, at the top-left
    p_target = {"boxes": torch.tensor([[10.0, 20, 50, 60]]), "labels": torch.tensor([3])}
    out, tgt = mixup(image, target, partner, p_target, lam=0.7, fill=0.25)
    canvas = torch.full((3, 40, 60), 0.25)
    canvas[:, :, :30] = 1.0
    torch.testing.assert_close(out, 0.7 * image + 0.3 * canvas, atol=1e-6, rtol=0)
    assert tgt["labels"].tolist() == [1, 3] and tgt["x"] == 7
    assert tgt["boxes"].tolist() == [[1.0, 2, 10, 12], [5.0, 10, 25, 30]]


def test_lambda_is_half_or_a_beta_draw():
    assert draw_lambda(None) == 0.5
    torch.manual_seed(0)
    draws = torch.tensor([draw_lambda(1.5) for _ in range(2000)])
    assert draws.min() > 0 and draws.max() < 1
    assert abs(draws.mean().item() - 0.5) < 0.02  # Beta(a, a) has mean 1/2
    assert abs(draws.var().item() - 1 / (4 * (2 * 1.5 + 1))) < 0.01  # and var 1/(4(2a+1))


def test_augment_mixup_without_boxes_and_with_p_zero():
    aug = DetectionAugment(train_sizes=(32,), hflip=0.0, color_jitter=None, mixup={"p": 1.0})
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    full = {"boxes": torch.tensor([[0.0, 0, 16, 16]]), "labels": torch.tensor([2])}
    torch.manual_seed(0)
    images, targets = aug([torch.zeros(3, 32, 32), torch.ones(3, 32, 32)], [empty, full], True)
    assert targets[0]["labels"].tolist() == [2]  # gets its partner's box
    assert targets[1]["labels"].tolist() == [2]  # its own; the partner has none
    torch.testing.assert_close(images[0], torch.full((3, 32, 32), 0.5))
    off = DetectionAugment(train_sizes=(32,), hflip=0.0, color_jitter=None, mixup={"p": 0.0})
    images, targets = off([torch.ones(3, 32, 32)], [full], True)
    assert torch.equal(images[0], torch.ones(3, 32, 32)) and targets[0]["labels"].tolist() == [2]
