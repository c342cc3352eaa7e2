import math

import pytest
import torch

from visdet.lightning.one_cycle import OneCycle


def expected(step, total, pct, start, peak, end):
    """fastai's combined cosine, written out independently."""
    warm = round(total * pct)
    if step < warm:
        t = step / warm
        return start + (peak - start) * (1 - math.cos(math.pi * t)) / 2
    t = (step - warm) / (total - warm)
    return peak + (end - peak) * (1 - math.cos(math.pi * t)) / 2


def two_group_sgd():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.SGD(
        [{"params": [a], "lr": 0.01}, {"params": [b], "lr": 0.1}], lr=0.1, momentum=0.9
    )


@pytest.mark.parametrize("check_step", [0, 1, 24, 25, 26, 60, 99, 100])
def test_lr_and_momentum_per_group_follow_the_formula(check_step):
    opt = two_group_sgd()
    sched = OneCycle(opt, total_steps=100)
    for _ in range(check_step):
        opt.step()
        sched.step()
    for group, peak in zip(opt.param_groups, (0.01, 0.1)):
        assert group["lr"] == pytest.approx(
            expected(check_step, 100, 0.25, peak / 25, peak, peak / 1e5)
        )
        assert group["momentum"] == pytest.approx(expected(check_step, 100, 0.25, 0.95, 0.85, 0.95))
    if check_step == 25:
        assert opt.param_groups[1]["lr"] == pytest.approx(0.1)  # the peak
        assert opt.param_groups[0]["momentum"] == pytest.approx(0.85)


def test_adam_beta1_is_cycled_and_bad_settings_fail():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.99))
    sched = OneCycle(opt, total_steps=10)
    assert opt.param_groups[0]["betas"] == (pytest.approx(0.95), 0.99)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 1e5)
    with pytest.raises(ValueError, match="known number of steps"):
        OneCycle(torch.optim.SGD([p], lr=0.1), total_steps=math.inf)
    with pytest.raises(ValueError, match="pct_start"):
        OneCycle(torch.optim.SGD([p], lr=0.1), total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="neither momentum nor betas"):
        OneCycle(torch.optim.Adagrad([p], lr=0.1), total_steps=10)
