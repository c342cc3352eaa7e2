"""Balanced sampling of positive and negative training examples."""

from __future__ import annotations

import torch
from torch import Tensor


class BalancedPositiveNegativeSampler:
    """Pick at most ``batch_size_per_image`` examples per image, of which at most
    ``positive_fraction`` are positives; negatives fill the rest. Choice is uniformly random
    (``torch.randperm``, seeded by the global generator or ``generator``).
    """

    def __init__(
        self,
        batch_size_per_image: int,
        positive_fraction: float,
        generator: torch.Generator | None = None,
    ) -> None:
        if batch_size_per_image < 1:
            raise ValueError(f"batch_size_per_image must be >= 1, got {batch_size_per_image}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.generator = generator

    def _pick(self, idx: Tensor, n: int) -> Tensor:
        perm = torch.randperm(idx.numel(), generator=self.generator)[:n].to(idx.device)
        return idx[perm]

    def __call__(self, labels: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """labels: per image, [P] with 1+ = positive, 0 = negative, -1 = ignore.

        Returns per-image bool masks (positives, negatives) of the sampled examples."""
        pos_masks, neg_masks = [], []
        for lab in labels:
            positive = torch.nonzero(lab >= 1).squeeze(1)
            negative = torch.nonzero(lab == 0).squeeze(1)
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pos_mask = torch.zeros_like(lab, dtype=torch.bool)
            neg_mask = torch.zeros_like(lab, dtype=torch.bool)
            pos_mask[self._pick(positive, num_pos)] = True
            neg_mask[self._pick(negative, num_neg)] = True
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks
