"""Max-IoU matching of predictions (anchors, proposals) to ground-truth boxes."""

from __future__ import annotations

import torch
from torch import Tensor


class Matcher:
    """Assign each prediction the ground truth it overlaps most.

    For each prediction (column of ``quality`` [G, P]) the result is the index of the best
    ground truth, or ``BELOW_LOW_THRESHOLD`` (-1, background) when its best IoU is below
    ``low_threshold``, or ``BETWEEN_THRESHOLDS`` (-2, ignored) when it lies in
    [low_threshold, high_threshold). With ``allow_low_quality_matches`` every ground truth
    also keeps the predictions that overlap it best (ties included), even below the
    thresholds, so no ground truth is left without a match; a ground truth that overlaps no
    prediction at all (best IoU 0) has no such match (torchvision would tie it with every
    prediction and mark them all foreground).
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(
        self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False
    ) -> None:
        if low_threshold > high_threshold:
            raise ValueError(
                f"low_threshold ({low_threshold}) must be <= high_threshold ({high_threshold})"
            )
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, quality: Tensor) -> Tensor:
        """quality: [G, P] IoU of G ground truths with P predictions -> int64 [P]."""
        if quality.dim() != 2:
            raise ValueError(f"quality must be a [G, P] matrix, got {list(quality.shape)}")
        g, p = quality.shape
        if g == 0:
            return torch.full(
                (p,), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=quality.device
            )
        if p == 0:
            return torch.zeros(0, dtype=torch.int64, device=quality.device)
        best, matches = quality.max(dim=0)
        all_matches = matches.clone()
        matches[best < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        between = (best >= self.low_threshold) & (best < self.high_threshold)
        matches[between] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            best_per_gt = quality.max(dim=1, keepdim=True).values
            # a ground truth that overlaps nothing (best 0) would tie with every prediction
            _, pred_idx = torch.nonzero((quality == best_per_gt) & (best_per_gt > 0), as_tuple=True)
            matches[pred_idx] = all_matches[pred_idx]
        return matches
