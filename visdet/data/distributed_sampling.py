"""How the data is split across processes in distributed training (DDP).

visdet's datamodule shards the data itself (``trainer.use_distributed_sampler=false`` in
the DDP trainer configs), so the rules are explicit and tested:

- Training without aspect-ratio grouping: torch's ``DistributedSampler`` (shuffled by the
  datamodule's seed and the epoch, padded so every process runs the same number of steps;
  a process that ran fewer steps would leave the others waiting in a gradient all-reduce).
- Training with aspect-ratio grouping: every process builds the same shuffled list of
  batches, pads it to a multiple of the process count and takes every N-th batch.
- Validation and test: ``EvaluationShardSampler``: image i goes to process i mod N, no
  padding, so the COCO evaluation (which gathers every process's detections) sees every
  validation image exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Dataset, DistributedSampler


class EvaluationShardSampler(DistributedSampler):
    """Indices ``rank, rank + N, rank + 2N, ...`` of the dataset: disjoint shards whose union
    is the whole dataset, in order, without the padding ``DistributedSampler`` adds.

    A ``DistributedSampler`` subclass so Lightning does not replace it."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        n = len(dataset)  # type: ignore[arg-type]
        if n < num_replicas:
            raise ValueError(
                f"the evaluation set has {n} images, fewer than the {num_replicas} processes: "
                "every process needs at least one image (use fewer devices or more images)"
            )

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]


def shard_batches(batches: list[list[int]], num_replicas: int, rank: int) -> list[list[int]]:
    """This process's share of a batch list that every process built identically: padded
    (by repeating batches from the start) to a multiple of ``num_replicas``, then every
    ``num_replicas``-th batch starting at ``rank``. All shards have the same length."""
    if num_replicas == 1 or not batches:
        return batches
    padded = list(batches)
    while len(padded) % num_replicas:
        padded.append(batches[(len(padded) - len(batches)) % len(batches)])
    return padded[rank::num_replicas]
