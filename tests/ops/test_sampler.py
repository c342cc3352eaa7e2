import pytest
import torch

from visdet.ops import BalancedPositiveNegativeSampler


def make_labels(n_pos, n_neg, n_ignore, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat(
        [
            torch.randint(1, 5, (n_pos,), generator=g),
            torch.zeros(n_neg, dtype=torch.int64),
            torch.full((n_ignore,), -1),
        ]
    )
    return labels[torch.randperm(len(labels), generator=g)]


def check_invariants(labels, pos, neg, batch, fraction):
    assert pos.dtype == neg.dtype == torch.bool
    assert pos.shape == neg.shape == labels.shape
    assert bool((labels[pos] >= 1).all()) and bool((labels[neg] == 0).all())
    assert not bool((pos & neg).any())
    assert not bool((labels[pos | neg] == -1).any())
    assert int(pos.sum()) <= int(batch * fraction)
    assert int(pos.sum() + neg.sum()) <= batch


@pytest.mark.parametrize(
    "n_pos, n_neg, n_ignore, want_pos, want_neg",
    [
        (100, 300, 50, 64, 192),  # plenty of both: 25% positives, negatives fill up
        (5, 300, 20, 5, 251),  # few positives: negatives fill the rest
        (3, 4, 10, 3, 4),  # few of both: everything available
        (0, 400, 0, 0, 256),
        (400, 0, 5, 64, 0),
    ],
)
def test_counts_and_invariants(n_pos, n_neg, n_ignore, want_pos, want_neg):
    labels = make_labels(n_pos, n_neg, n_ignore)
    sampler = BalancedPositiveNegativeSampler(256, 0.25, torch.Generator().manual_seed(0))
    (pos,), (neg,) = sampler([labels])
    check_invariants(labels, pos, neg, 256, 0.25)
    assert (int(pos.sum()), int(neg.sum())) == (want_pos, want_neg)


def test_positive_fraction_is_floored():
    labels = make_labels(10, 10, 0)
    (pos,), (neg,) = BalancedPositiveNegativeSampler(5, 0.5)([labels])
    assert (int(pos.sum()), int(neg.sum())) == (2, 3)


def test_several_images():
    labels = [make_labels(30, 100, 10, seed) for seed in range(3)]
    labels.append(torch.zeros(0, dtype=torch.int64))
    pos, neg = BalancedPositiveNegativeSampler(64, 0.5, torch.Generator().manual_seed(1))(labels)
    assert len(pos) == len(neg) == 4
    for lab, p, n in zip(labels, pos, neg):
        check_invariants(lab, p, n, 64, 0.5)
    assert [int(p.sum()) for p in pos] == [30, 30, 30, 0]
    assert [int(n.sum()) for n in neg] == [34, 34, 34, 0]


def test_deterministic_given_generator():
    labels = [make_labels(50, 200, 30, seed) for seed in range(2)]

    def run(seed):
        sampler = BalancedPositiveNegativeSampler(64, 0.25, torch.Generator().manual_seed(seed))
        return sampler(labels)

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        assert torch.equal(x, y)
    assert any(not torch.equal(x, y) for x, y in zip(a[0] + a[1], c[0] + c[1]))


def test_every_candidate_can_be_drawn():
    labels = make_labels(10, 10, 5)
    sampler = BalancedPositiveNegativeSampler(6, 0.5, torch.Generator().manual_seed(0))
    seen = torch.zeros_like(labels, dtype=torch.bool)
    for _ in range(50):
        (pos,), (neg,) = sampler([labels])
        seen |= pos | neg
    assert torch.equal(seen, labels >= 0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        BalancedPositiveNegativeSampler(0, 0.5)
    with pytest.raises(ValueError):
        BalancedPositiveNegativeSampler(8, 1.5)
