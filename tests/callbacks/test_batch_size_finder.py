"""Auto batch size: the search against brute force, the worst case (largest training image,
most crowded image's object count), memory growing with the object count, and a run that
applies the found size to the data loaders with model and optimizer restored."""

import json
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.plugins.precision import Precision
from tiny_runs import tiny_cfg

from visdet.callbacks import BatchSizeFinder
from visdet.callbacks.batch_size_finder import (
    search_batch_size,
    worst_case_batch,
    worst_case_shape,
)
from visdet.models import faster_rcnn_resnet_fpn
from visdet.runs.train_detector import train


@pytest.mark.parametrize("start,limit", [(1, 256), (1, 37), (3, 100), (8, 8)])
def test_search_finds_the_largest_fitting_size(start, limit):
    for largest in range(0, 140):
        found, tried = search_batch_size(lambda n, m=largest: n <= m, start, limit)
        expected = max([n for n in range(start, limit + 1) if n <= largest], default=0)
        assert found == expected, (largest, start, limit)
        assert len(tried) == len(set(tried))  # no size is tried twice
        assert len(tried) <= 2 * limit.bit_length() + 1


def test_search_doubles_then_bisects():
    _, tried = search_batch_size(lambda n: n <= 11, 1, 256)
    assert tried == [1, 2, 4, 8, 16, 12, 10, 11]


def test_worst_case_shape_takes_the_largest_resized_image():
    assert worst_case_shape([1.0], [96, 128], 1333) == (128, 128)
    assert worst_case_shape([1.0, 1.5, 0.5], [100], 1333) == (
        200,
        100,
    )  # 0.5: 200 x 100 > 100 x 150
    assert worst_case_shape([4.0], [800], 1333) == (333, 1333)  # the long side capped
    assert worst_case_shape([], [64], 1333) == (64, 64)


def test_worst_case_batch_has_valid_boxes_in_every_image():
    images, targets = worst_case_batch(3, (60, 90), 50, 4, "cpu")
    assert len(images) == 3 and all(i.shape == (3, 60, 90) for i in images)
    for t in targets:
        b = t["boxes"]
        assert b.shape == (50, 4) and bool((b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all())
        assert float(b[:, [0, 2]].min()) >= 0 and float(b[:, [0, 2]].max()) <= 90
        assert float(b[:, [1, 3]].max()) <= 60
        assert set(t["labels"].tolist()) == {1, 2, 3, 4}
    assert worst_case_batch(1, (32, 32), 0, 3, "cpu")[1][0]["boxes"].shape == (0, 4)


def test_step_memory_grows_with_the_object_count():
    torch.manual_seed(0)
    detector = faster_rcnn_resnet_fpn(num_classes=4, depth=18, min_size=None).train()
    module = SimpleNamespace(
        detector=detector, device=torch.device("cpu"), parameters=detector.parameters
    )
    trainer = SimpleNamespace(precision_plugin=Precision())
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.0)
    finder = BatchSizeFinder(memory_budget_mb=1.0)
    few = finder.step_peak_mb(
        trainer, module, optimizer, worst_case_batch(2, (128, 128), 1, 4, "cpu")
    )
    many = finder.step_peak_mb(
        trainer, module, optimizer, worst_case_batch(2, (128, 128), 300, 4, "cpu")
    )
    params = sum(p.numel() * 4 for p in detector.parameters()) / 2**20
    assert params < few < many


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"start": 0}, "1 <= start <= max_batch_size"),
        ({"start": 8, "max_batch_size": 4}, "1 <= start <= max_batch_size"),
        ({"headroom": 1.5}, "headroom must be in"),
        ({"memory_budget_mb": -1}, "memory_budget_mb must be > 0"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchSizeFinder(**kwargs)


def test_cpu_without_a_budget_is_refused():
    with pytest.raises(ValueError, match="memory_budget_mb must be set when training on cpu"):
        BatchSizeFinder().budget_mb(torch.device("cpu"))


def _finder_run(tmp_path, budget_mb, apply=True):
    finder = [
        "+callbacks/batch_size=default",
        "callbacks.batch_size.max_batch_size=8",
        f"callbacks.batch_size.memory_budget_mb={budget_mb}",
        f"callbacks.batch_size.apply={str(apply).lower()}",
        "aug.train_sizes=[320]",  # activations, not the weights and optimizer, decide here
        "trainer.max_epochs=1",
        "data.batch_size=2",
    ]
    metrics = train(tiny_cfg(tmp_path, *finder))
    result = json.loads((tmp_path / "run" / "batch_size_finder.json").read_text())
    return metrics, result


@pytest.mark.slow  # about 40 s: a full probe and a training run
def test_run_applies_the_found_size_to_loaders_and_schedule(tmp_path):
    _, probe = _finder_run(tmp_path / "probe", 1e6, apply=False)
    peaks = {t["batch_size"]: t["peak_mb"] for t in probe["trials"]}
    assert probe["batch_size"] == 8 and list(peaks) == [1, 2, 4, 8]
    # the optimizer step sets the floor; above it the activations grow with the batch
    assert peaks[1] <= peaks[2] < peaks[4] < peaks[8]
    budget = (peaks[2] + peaks[4]) / 2  # 2 fits; 4 does not, nor does 3 if above budget
    metrics, result = _finder_run(tmp_path / "run2", budget)
    found = result["batch_size"]
    assert result["previous_batch_size"] == 2 and result["applied"] and found in (2, 3)
    fits = {t["batch_size"]: t["fits"] for t in result["trials"]}
    assert fits[found] and all(fits[n] == (n <= found) for n in fits)
    assert all((t["peak_mb"] <= budget) == t["fits"] for t in result["trials"])
    assert result["worst_case"]["image_size"] == [320, 320] and result["worst_case"]["objects"] >= 1
    # the loaders and the schedule were built at the found size: 8 images, one epoch
    best = torch.load(metrics["best_checkpoint"], weights_only=True)
    assert best["global_step"] == -(-8 // found)
