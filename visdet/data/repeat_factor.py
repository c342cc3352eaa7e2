"""Repeat-factor sampling for class imbalance (LVIS, Gupta et al. 2019; detectron2's
``RepeatFactorTrainingSampler``).

With ``f(c)`` the fraction of training images that contain class ``c`` and a threshold ``t``:

- class repeat factor ``r(c) = max(1, sqrt(t / f(c)))``;
- image repeat factor ``r(I) = max(r(c) for the classes c in I)``, 1 for an image without labels;
- each epoch, image ``I`` appears ``floor(r(I))`` times plus once more with probability
  ``frac(r(I))`` (stochastic rounding by a generator seeded with ``seed + epoch``), and the
  list is shuffled by the same generator.

An epoch's length therefore varies a little from epoch to epoch around ``sum(r(I))``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def repeat_factors(image_labels: list[list[int]], threshold: float) -> list[float]:
    """Per-image repeat factors ``r(I)``.

    Args:
        image_labels: for each image, the class labels of its boxes (repeats allowed).
        threshold: ``t``, the image fraction below which a class is repeated, in (0, 1].

    Returns:
        one float >= 1 per image, in the order of ``image_labels``.
    """
    check_threshold(threshold)
    n = len(image_labels)
    images_with = {}  # class -> number of images that contain it
    for labels in image_labels:
        for c in set(labels):
            images_with[c] = images_with.get(c, 0) + 1
    class_factor = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in images_with.items()}
    return [max((class_factor[c] for c in set(labels)), default=1.0) for labels in image_labels]


def check_threshold(threshold: float) -> None:
    """ValueError naming ``data.repeat_threshold`` unless it is a number in (0, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ValueError(
            f"data.repeat_threshold must be a number in (0, 1], got {type(threshold).__name__} "
            f"{threshold!r}"
        )
    if not 0 < threshold <= 1:
        raise ValueError(f"data.repeat_threshold must be in (0, 1], got {threshold}")


def epoch_indices(factors: list[float], seed: int, epoch: int) -> list[int]:
    """One epoch's shuffled list of image indices: image ``i`` appears ``floor(factors[i])``
    times plus once more with probability ``frac(factors[i])``; a ``torch.Generator`` seeded
    with ``seed + epoch`` draws the roundings and the order, so every process of a DDP run
    builds the same list."""
    g = torch.Generator().manual_seed(seed + epoch)
    r = torch.tensor(factors, dtype=torch.float64).reshape(-1)
    whole = r.floor()
    counts = whole + (torch.rand(len(r), generator=g, dtype=torch.float64) < r - whole)
    indices = torch.repeat_interleave(torch.arange(len(r)), counts.long())
    return indices[torch.randperm(len(indices), generator=g)].tolist()


def describe_repeat_factors(factors: list[float], threshold: float) -> str:
    """A one-line summary for the log: threshold, images repeated, expected epoch length."""
    repeated = sum(r > 1 for r in factors)
    top = max(factors, default=1.0)
    return (
        f"repeat-factor sampling (threshold {threshold:g}): {repeated} of {len(factors)} "
        f"training images repeated (largest factor {top:.2f}); expected epoch length "
        f"{sum(factors):.1f} images vs {len(factors)} in the dataset"
    )


class RepeatFactorSampler(Sampler[int]):
    """Image indices of one repeat-factor epoch (``epoch_indices``), this process's shard.

    With ``num_replicas > 1`` (DDP) every process builds the same epoch list, pads it (by
    repeating indices from its start) to a multiple of ``num_replicas`` and keeps every
    ``num_replicas``-th index from ``rank``: shards of equal length whose union is the list.

    ``set_epoch(e)`` picks the epoch (Lightning calls it); each ``__iter__`` also advances the
    epoch by one afterwards, so a plain loop without ``set_epoch`` gets a new draw every
    epoch. ``len()`` is the length of the epoch the next ``__iter__`` yields.

    Args:
        factors: per-image repeat factors (``repeat_factors``).
        seed: base seed; epoch ``e`` uses ``seed + e``.
        num_replicas, rank: process count and this process's rank.
    """

    def __init__(
        self, factors: list[float], seed: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"RepeatFactorSampler needs num_replicas >= 1 and 0 <= rank < num_replicas, "
                f"got num_replicas={num_replicas}, rank={rank}"
            )
        self.factors = list(factors)
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_list(self, epoch: int) -> list[int]:
        """The whole epoch's index list (before sharding), the same on every process."""
        return epoch_indices(self.factors, self.seed, epoch)

    def _shard(self, epoch: int) -> list[int]:
        full = self.epoch_list(epoch)
        if self.num_replicas == 1 or not full:
            return full
        padded = list(full)
        while len(padded) % self.num_replicas:
            padded.append(full[(len(padded) - len(full)) % len(full)])
        return padded[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        shard = self._shard(self.epoch)
        self.epoch += 1
        return iter(shard)

    def __len__(self) -> int:
        return len(self._shard(self.epoch))
