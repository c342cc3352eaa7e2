"""Repeat-factor sampling (LVIS): factors against a brute-force count, the empirical repeat
count against r(I), DDP shards, aspect-ratio grouping and the datamodule's settings."""

import json
import math
from collections import Counter
from types import SimpleNamespace

import pytest
from PIL import Image

from visdet.data import CocoSource, DetectionDataModule, RepeatFactorSampler
from visdet.data.datamodule import AspectRatioBatchSampler
from visdet.data.repeat_factor import epoch_indices, repeat_factors

LABELS = [[1, 1, 2], [2], [2, 3], [], [2], [2, 4, 4], [2], [2, 1], [2], [2]]


def brute_force_factors(image_labels, t):
    out = []
    for labels in image_labels:
        r = 1.0
        for c in labels:
            f = sum(c in other for other in image_labels) / len(image_labels)
            r = max(r, max(1.0, math.sqrt(t / f)))
        out.append(r)
    return out


@pytest.mark.parametrize("t", [0.001, 0.1, 0.3, 1.0])
def test_factors_match_a_brute_force_count(t):
    assert repeat_factors(LABELS, t) == pytest.approx(brute_force_factors(LABELS, t), rel=1e-12)


def test_factors_closed_form_empty_image_and_a_class_in_every_image():
    r = repeat_factors(LABELS, 0.5)
    # class 3 and class 4 are in 1 of 10 images: sqrt(0.5 / 0.1); class 1 in 2: sqrt(2.5)
    assert r[2] == pytest.approx(math.sqrt(5)) and r[5] == pytest.approx(math.sqrt(5))
    assert r[0] == pytest.approx(math.sqrt(2.5)) and r[7] == pytest.approx(math.sqrt(2.5))
    assert r[3] == 1.0  # no labels
    assert r[1] == 1.0  # class 2 is in 9 of 10 images: sqrt(0.5 / 0.9) < 1
    assert repeat_factors([[5], [5, 5], [5]], 1.0) == [1.0, 1.0, 1.0]  # in every image
    assert repeat_factors([], 0.1) == []
    assert repeat_factors([[], []], 0.1) == [1.0, 1.0]


def test_each_image_appears_r_times_on_average():
    base = [1.0, 1.5, 2.25, 3.7, 1.0, 1.1]
    copies, epochs = 40, 300  # the mean of each factor over 40 images x 300 epochs
    factors = base * copies
    totals = Counter()
    for e in range(epochs):
        counts = Counter(epoch_indices(factors, seed=7, epoch=e))
        for i, r in enumerate(factors):  # floor(r) or floor(r) + 1 times in every epoch
            assert math.floor(r) <= counts[i] <= math.floor(r) + 1
        totals.update(counts)
    for k, r in enumerate(base):
        mean = sum(totals[k + j * len(base)] for j in range(copies)) / (copies * epochs)
        assert mean == pytest.approx(r, abs=0.01)  # std of the mean <= 0.0037


def test_epochs_are_seeded_and_shuffled():
    factors = [2.5] * 20
    assert epoch_indices(factors, 3, 1) == epoch_indices(factors, 3, 1)
    assert epoch_indices(factors, 3, 1) != epoch_indices(factors, 3, 2)
    one = epoch_indices(factors, 3, 1)
    assert one != sorted(one)
    assert epoch_indices([], 0, 0) == []


def test_sampler_advances_the_epoch_and_len_is_the_next_epoch():
    factors = [1.5] * 40
    s = RepeatFactorSampler(factors, seed=1)
    n0 = len(s)
    first = list(s)
    assert len(first) == n0 and first == epoch_indices(factors, 1, 0)
    assert list(s) == epoch_indices(factors, 1, 1)
    s.set_epoch(5)
    assert len(s) == len(epoch_indices(factors, 1, 5))
    assert list(s) == epoch_indices(factors, 1, 5)


@pytest.mark.parametrize("world", [2, 3, 4])
def test_ddp_shards_are_equal_and_cover_the_epoch(world):
    factors = repeat_factors(LABELS, 0.5)
    for epoch in (0, 3):
        full = epoch_indices(factors, 11, epoch)
        shards = []
        for rank in range(world):
            s = RepeatFactorSampler(factors, seed=11, num_replicas=world, rank=rank)
            s.set_epoch(epoch)
            n = len(s)
            shards.append(list(s))
            assert len(shards[-1]) == n
        assert len({len(sh) for sh in shards}) == 1  # same number of steps on every process
        positions = [sh[k] for k in range(len(shards[0])) for sh in shards]  # interleaved
        assert positions[: len(full)] == full  # the shards are the epoch list, dealt out
        assert len(positions) - len(full) < world  # plus fewer than `world` padding entries
        assert positions[len(full) :] == full[: len(positions) - len(full)]


def test_bad_sampler_arguments():
    with pytest.raises(ValueError, match="num_replicas"):
        RepeatFactorSampler([1.0], num_replicas=2, rank=2)
    for bad in (0, -0.1, 1.5, "x", True):
        with pytest.raises(ValueError, match="data.repeat_threshold"):
            repeat_factors(LABELS, bad)


@pytest.mark.parametrize("world", [1, 2])
def test_aspect_ratio_grouping_batches_the_repeat_factor_list(world):
    ratios = [1.5, 0.5, 1.0, 0.75, 2.0, 0.6, 1.2, 0.9, 1.3, 0.4]
    factors = repeat_factors(LABELS, 0.5)
    for epoch in (1, 2):
        full = epoch_indices(factors, 4, epoch)
        gathered = []
        for rank in range(world):
            repeat = RepeatFactorSampler(factors, seed=4, num_replicas=world, rank=rank)
            ar = AspectRatioBatchSampler(
                ratios, 3, seed=4, num_replicas=world, rank=rank, epoch_indices=repeat.epoch_list
            )
            ar.set_epoch(epoch - 1)  # __iter__ advances to `epoch`
            n = len(ar)
            batches = list(ar)
            assert len(batches) == n
            for batch in batches:
                assert len({ratios[i] >= 1 for i in batch}) == 1  # one orientation per batch
            gathered.append(batches)
        assert len({len(b) for b in gathered}) == 1
        flat = Counter(i for batches in gathered for b in batches for i in b)
        assert all(flat[i] >= k for i, k in Counter(full).items())  # every entry is batched
        if world == 1:
            assert flat == Counter(full)


def _write_coco(root, sizes, labels):
    """A COCO dataset with one image of each (w, h) in ``sizes`` and, for each image, one
    box per label; the same file serves as train and val."""
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for i, ((w, h), labs) in enumerate(zip(sizes, labels, strict=True), start=1):
        Image.new("RGB", (w, h), (i * 20, 0, 0)).save(root / "images" / f"{i}.png")
        images.append({"id": i, "width": w, "height": h, "file_name": f"{i}.png"})
        for lab in labs:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": lab,
                    "bbox": [1, 1, 4, 4],
                    "area": 16,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3, 4)]
    path = root / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return CocoSource(str(root), "ann.json", "images", "ann.json", "images")


@pytest.mark.parametrize("group", [False, True])
def test_datamodule_repeat_factor_loader(tmp_path, group, caplog):
    sizes = [(16, 8), (8, 16)] * 5
    source = _write_coco(tmp_path / "d", sizes, LABELS)
    dm = DetectionDataModule(
        source,
        batch_size=2,
        group_by_aspect_ratio=group,
        seed=5,
        sampler="repeat_factor",
        repeat_threshold=0.5,
    )
    with caplog.at_level("INFO", logger="visdet.data.datamodule"):
        dm.setup("fit")
    assert dm.repeat_factors == pytest.approx(brute_force_factors(LABELS, 0.5))
    assert "repeat-factor sampling (threshold 0.5): 4 of 10 training images repeated" in (
        caplog.text
    )
    loader = dm.train_dataloader()
    full = epoch_indices(dm.repeat_factors, 5, 1 if group else 0)
    if group:
        batches = list(loader.batch_sampler)
        assert all(len({sizes[i][0] > sizes[i][1] for i in b}) == 1 for b in batches)
        assert Counter(i for b in batches for i in b) == Counter(full)
    else:
        assert isinstance(loader.sampler, RepeatFactorSampler)
        assert list(loader.sampler) == full
    batch = next(iter(loader))
    assert 1 <= len(batch["images"]) <= 2 and len(batch["targets"]) == len(batch["images"])
    assert isinstance(dm.val_dataloader().sampler, RepeatFactorSampler) is False


def test_datamodule_shards_the_repeat_factor_list_under_ddp(tmp_path):
    source = _write_coco(tmp_path / "d", [(16, 8)] * 10, LABELS)
    shards = []
    for rank in (0, 1):
        dm = DetectionDataModule(source, sampler="repeat_factor", repeat_threshold=0.5, seed=2)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        dm.setup("fit")
        shards.append(list(dm.train_dataloader().sampler))
    full = epoch_indices(dm.repeat_factors, 2, 0)
    assert len(shards[0]) == len(shards[1]) == math.ceil(len(full) / 2)
    assert Counter(shards[0] + shards[1]) - Counter(full) == Counter(full[: len(full) % 2])


def test_datamodule_random_sampler_is_unchanged(tmp_path):
    source = _write_coco(tmp_path / "d", [(16, 8)] * 10, LABELS)
    dm = DetectionDataModule(source)
    dm.setup("fit")
    assert dm.repeat_factors is None
    assert not isinstance(dm.train_dataloader().sampler, RepeatFactorSampler)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"sampler": "lvis"}, "data.sampler"),
        ({"sampler": None}, "data.sampler"),
        ({"repeat_threshold": 0}, "data.repeat_threshold"),
        ({"repeat_threshold": 2.0}, "data.repeat_threshold"),
        ({"repeat_threshold": "high"}, "data.repeat_threshold"),
    ],
)
def test_datamodule_bad_values_name_the_key(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=key):
        DetectionDataModule(CocoSource(str(tmp_path)), **kwargs)
