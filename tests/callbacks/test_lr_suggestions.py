import math

import pytest

from visdet.callbacks.lr_suggestions import suggest_lr


def lrs(n=50):
    return [10 ** (-6 + 6 * i / (n - 1)) for i in range(n)]


def test_minimum_is_a_tenth_of_the_argmin():
    x = lrs()
    losses = [(math.log10(lr) + 2) ** 2 for lr in x]  # minimum at lr = 1e-2
    best = min(range(len(x)), key=losses.__getitem__)
    assert suggest_lr(x, losses, "minimum") == pytest.approx(x[best] / 10)


def test_steep_finds_the_steepest_descent():
    x = lrs()
    # loss falls like a logistic step centred at 1e-3 (steepest there), then rises
    losses = [1 / (1 + math.exp(3 * (math.log10(lr) + 3))) + (0.5 if lr > 0.1 else 0.0) for lr in x]
    assert math.log10(suggest_lr(x, losses, "steep")) == pytest.approx(-3, abs=0.13)


def test_valley_is_the_middle_of_the_longest_decrease():
    x = lrs(40)
    # a low rising start (10 points), a strictly decreasing stretch of 20, then an explosion
    losses = [0.5 + 0.01 * i for i in range(10)]
    losses += [2.0 - 0.05 * (i + 1) for i in range(20)]
    losses += [1.0 + 2**i for i in range(10)]
    # the longest decreasing subsequence is the stretch, indices 10..29: its middle is 19
    got = x.index(suggest_lr(x, losses, "valley"))
    assert 18 <= got <= 20


def test_bad_input():
    with pytest.raises(ValueError, match="one of"):
        suggest_lr(lrs(), [1.0] * 50, "fastest")
    with pytest.raises(ValueError, match="at least 3 finite"):
        suggest_lr([1e-3, 1e-2, 1e-1], [1.0, float("nan"), float("inf")])
