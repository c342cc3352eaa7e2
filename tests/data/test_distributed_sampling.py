"""How data is split across DDP processes, checked by enumerating every rank's share."""

import pytest
import torch

from visdet.data.datamodule import AspectRatioBatchSampler
from visdet.data.distributed_sampling import EvaluationShardSampler, shard_batches
from visdet.metrics import CocoMeanAP


@pytest.mark.parametrize(("n", "world"), [(5, 2), (7, 3), (4, 4), (1, 1), (10, 3)])
def test_evaluation_shards_are_disjoint_and_cover_every_image_once(n, world):
    data = list(range(n))
    shards = [list(EvaluationShardSampler(data, world, r)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == data
    assert [len(EvaluationShardSampler(data, world, r)) for r in range(world)] == [
        len(s) for s in shards
    ]
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_evaluation_needs_an_image_per_process():
    with pytest.raises(ValueError, match="3 images, fewer than the 4 processes"):
        EvaluationShardSampler([0, 1, 2], 4, 0)


@pytest.mark.parametrize(("batches", "world"), [(5, 2), (6, 3), (1, 2), (7, 4), (0, 2)])
def test_batch_shards_have_equal_length_and_cover_every_batch(batches, world):
    full = [[2 * b, 2 * b + 1] for b in range(batches)]
    shards = [shard_batches(full, world, r) for r in range(world)]
    assert len({len(s) for s in shards}) == 1  # same number of steps on every process
    covered = [b for s in shards for b in s]
    assert all(b in covered for b in full)
    assert len(covered) - len(full) < world  # padding repeats fewer than `world` batches


def test_grouped_batches_are_the_same_list_sharded():
    ratios = [1.5, 0.5] * 9
    whole = AspectRatioBatchSampler(ratios, 2, seed=3)
    parts = [AspectRatioBatchSampler(ratios, 2, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for _ in range(2):  # two epochs: every process follows the same epoch order
        full, shards = list(whole), [list(p) for p in parts]
        assert shards == [shard_batches(full, 2, 0), shard_batches(full, 2, 1)]
        assert len(shards[0]) == len(shards[1]) == 5
        for batch in shards[0] + shards[1]:
            assert len({ratios[i] >= 1 for i in batch}) == 1  # one orientation per batch


def test_coco_metric_refuses_an_image_seen_twice(tmp_path):
    import json

    ann = tmp_path / "ann.json"
    ann.write_text(
        json.dumps(
            {
                "images": [
                    {"id": i, "width": 10, "height": 10, "file_name": f"{i}.png"} for i in (1, 2)
                ],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 1,
                        "category_id": 1,
                        "bbox": [1, 1, 4, 4],
                        "area": 16,
                        "iscrowd": 0,
                    }
                ],
                "categories": [{"id": 1, "name": "a"}],
            }
        )
    )
    pred = {
        "boxes": torch.tensor([[1.0, 1, 5, 5]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([1]),
    }
    metric = CocoMeanAP(ann)
    metric.update([pred, pred], [1, 2])
    assert metric.compute()["num_images"] == 2
    metric.update([pred], [1])
    with pytest.raises(
        ValueError, match=r"1 image\(s\) were evaluated more than once \(ids \[1\]\)"
    ):
        metric.compute()
