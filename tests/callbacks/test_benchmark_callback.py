import logging
import time

import lightning as L
import pytest
import torch
from tiny_runs import tiny_cfg
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from visdet.bench.schema import load_run
from visdet.callbacks.benchmark import BenchmarkCallback, count_images
from visdet.lightning import DetectorModule
from visdet.runs.train_detector import train

PNG = b"\x89PNG\r\n\x1a\n"
SLOW_BACKWARD_S = 0.03


def tiny_detector_cfg(tmp_path, *extra):
    """One epoch of 4 steps (8 images, batch 2), no test phase."""
    return tiny_cfg(
        tmp_path,
        "data.source.num_val=2",
        "data.batch_size=2",
        "trainer.max_epochs=1",
        "test=false",
        *extra,
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_training_run_writes_the_benchmark(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="visdet.callbacks.benchmark")
    cfg = tiny_detector_cfg(
        tmp_path, "+callbacks/benchmark=default", "callbacks.benchmark.skip_first_steps=1"
    )
    train(cfg)
    run = load_run(tmp_path / "run" / "benchmark_training.json")
    assert run["kind"] == "training" and run["settings"]["measured_steps"] == 3
    results = {r["component"]: r for r in run["results"]}
    stages = ["backbone", "neck", "rpn", "roi_heads"]
    assert list(results) == [f"train/detector.{s}" for s in stages] + ["train/step"]
    for stage in stages:
        r = results[f"train/detector.{stage}"]
        assert r["case"] == "b2" and r["params"] > 0 and r["memory_kind"] == "cpu_process_rss"
        assert r["forward_ms"]["median"] > 0 and r["forward_ms"]["repeats"] == 3
        assert r["extra"]["backward_ms"]["median"] > 0
        assert r["forward_backward_ms"]["median"] > r["forward_ms"]["median"]
    step = results["train/step"]
    extra = step["extra"]
    # a step holds its components' forward and backward
    parts = sum(results[f"train/detector.{s}"]["forward_backward_ms"]["median"] for s in stages)
    assert step["forward_backward_ms"]["median"] > 0.5 * parts
    assert extra["data_wait_ms"]["median"] > 0 and extra["data_wait_ms"]["repeats"] == 3
    assert [s for s, _ in extra["memory_mb"]] == [1, 2, 3]
    assert all(mib > 0 for _, mib in extra["memory_mb"])
    assert 0 < extra["overhead_fraction"] < 1
    assert run["settings"]["overhead_fraction"] == extra["overhead_fraction"]
    assert step["throughput"]["images_per_s"] > 0 and step["input"] == "3x64x64"
    assert (tmp_path / "run" / "benchmark_training.png").read_bytes()[:8] == PNG
    assert "benchmark: 3 steps" in caplog.text and "overhead" in caplog.text


class _SlowBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        time.sleep(SLOW_BACKWARD_S)
        return grad


class Body(nn.Module):
    """Returns a dict, which nn.Module's full backward hooks cannot see."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(4, 8)

    def forward(self, x):
        return {"a": _SlowBackward.apply(self.a(x)), "b": self.b(x)}


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 1)

    def forward(self, feats):
        return self.fc(feats["a"] + feats["b"]).squeeze(1)


class TinyModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.body, self.head = Body(), Head()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.head(self.body(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _hooks(module: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in module.modules()
    ) + sum(len(p._post_accumulate_grad_hooks or {}) for p in module.parameters())


def test_backward_is_attributed_to_its_component_and_hooks_are_removed(tmp_path):
    x = torch.randn(24, 4)
    loader = DataLoader(TensorDataset(x, x.sum(1)), batch_size=4)
    module = TinyModule()
    callback = BenchmarkCallback(skip_first_steps=1, every_n_steps=2, plot=False)
    seen = []
    probe = L.Callback()
    probe.on_train_batch_end = lambda *a: seen.append(_hooks(module))
    trainer = L.Trainer(
        max_epochs=1,
        callbacks=[callback, probe],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    assert _hooks(module) == 0
    trainer.fit(module, loader)
    assert min(seen) > 0 and _hooks(module) == 0  # registered during training only
    assert [r["step"] for r in callback.records] == [1, 3, 5]
    run = load_run(tmp_path / "benchmark_training.json")
    results = {r["component"]: r for r in run["results"]}
    assert list(results) == ["train/body", "train/head", "train/step"]
    body, head = results["train/body"], results["train/head"]
    assert body["extra"]["backward_ms"]["median"] >= 1000 * SLOW_BACKWARD_S
    assert head["extra"]["backward_ms"]["median"] < body["extra"]["backward_ms"]["median"]
    assert results["train/step"]["batch_size"] == 4
    assert not (tmp_path / "benchmark_training.png").exists()


def test_unknown_component_lists_the_available_ones():
    module = DetectorModule(nn.Module(), optimizer=torch.optim.SGD)
    module.detector.backbone = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"'detector\.nope'.*under 'detector': detector\.backbone"):
        BenchmarkCallback(components=["detector.nope"]).on_fit_start(None, module)
    with pytest.raises(ValueError, match=r"'nope'.*available: detector, augment"):
        BenchmarkCallback(components=["nope"]).on_fit_start(None, module)


def test_count_images_of_detector_and_classification_batches():
    images = [torch.rand(3, 8, 6), torch.rand(3, 8, 8)]
    assert count_images({"images": images, "targets": [{}, {}]}) == (2, "3x8x6")
    assert count_images((images, [{}, {}])) == (2, "3x8x6")
    assert count_images((torch.rand(5, 3, 4, 4), torch.zeros(5))) == (5, "3x4x4")
    assert count_images((torch.rand(6, 4), torch.zeros(6))) == (6, "4")
