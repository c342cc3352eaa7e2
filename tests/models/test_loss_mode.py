"""Validation losses: the training losses without training side effects."""

import random

import torch

from visdet.config.presets import build_detector
from visdet.models.detectors.loss_mode import loss_mode


def _batch():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 72, 64, generator=g)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # negative
    ]
    return images, targets


def test_losses_are_deterministic_and_leave_no_trace():
    torch.manual_seed(0)
    # resnet34 trains its BatchNorm layers: their running statistics must not move
    detector = build_detector(
        "faster_rcnn_r18_fpn", 2, ["backbone=resnet34", "neck.out_channels=32"]
    ).eval()
    bn = next(m for m in detector.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stats = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    images, targets = _batch()
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    with torch.no_grad(), loss_mode(detector, seed=3) as d:
        first = d(images, targets)
        assert bn.training is False and detector.rpn.training is True
    with torch.no_grad(), loss_mode(detector, seed=3) as d:
        second = d(images, targets)
    assert set(first) == {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"}
    for k in first:
        assert torch.isfinite(first[k]) and torch.equal(first[k], second[k])
    assert all(not m.training for m in detector.modules())  # modes restored
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert int(bn.num_batches_tracked) == stats[2]
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state


def test_training_mode_is_restored_too():
    detector = build_detector("faster_rcnn_r18_fpn", 2, ["neck.out_channels=32"]).train()
    images, targets = _batch()
    with torch.no_grad(), loss_mode(detector) as d:
        d(images, targets)
    assert all(m.training for m in detector.modules())
