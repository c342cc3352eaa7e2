"""End to end through the Hydra compose API: a tiny run trains, evaluates, writes
metrics.json, and resumes from its checkpoint."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tiny_runs import tiny_cfg

from visdet.lightning import DetectorModule, NonFiniteLossError
from visdet.models.weights.checkpoint_state import read_state_dict
from visdet.models.weights.safetensors_file import read_metadata
from visdet.runs.evaluate import run_eval
from visdet.runs.train_detector import train


def eval_cfg(*overrides):
    with initialize_config_module(config_module="visdet.conf", version_base="1.3"):
        return compose("eval", overrides=list(overrides), return_hydra_config=True)


def read_losses(run_dir):
    lines = (run_dir / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("train/loss")
    return [float(r.split(",")[col]) for r in lines[1:] if r.split(",")[col]]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tiny_run_trains_and_writes_metrics(tmp_path, capsys):
    metrics = train(tiny_cfg(tmp_path, "analysis=true"))
    run = tmp_path / "run"
    text = (run / "metrics.json").read_text()
    assert "NaN" not in text  # strict JSON: a metric without objects of that size is null
    written = json.loads(text)
    assert written["val/mAP_large"] is None  # 64 px images: no large objects
    assert written["epochs"] == 3 and 0 <= written["val/mAP"] <= 1
    assert set(written["per_class_AP"]) == {"rectangle", "circle", "triangle", "cross"}
    assert metrics["val/mAP50"] == written["val/mAP50"]
    losses = read_losses(run)
    assert len(losses) == 6
    assert sum(losses[-2:]) < sum(losses[:2])
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "final: val/mAP=" in capsys.readouterr().out
    # the best detector's weights as safetensors, with config and classes: they rebuild it
    weights = run / "checkpoints" / "model.safetensors"
    assert written["weights"] == str(weights)
    meta = read_metadata(weights)
    description = meta["visdet"]
    names = ["rectangle", "circle", "triangle", "cross"]
    assert description["classes"] == [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    assert description["preprocessing"] == {"min_size": 64, "max_size": 1333, "antialias": True}
    assert description["config"]["data"]["num_classes"] == 4
    assert meta["source_checkpoint"] == written["best_checkpoint"]
    detector = instantiate(OmegaConf.create(description["detector"]))
    detector.load_state_dict(read_state_dict(str(weights)), strict=True)
    best_ckpt = torch.load(written["best_checkpoint"], weights_only=True)
    assert best_ckpt["visdet"] == description  # every checkpoint describes itself
    best = best_ckpt["state_dict"]
    # visdet eval's outputs for the tested checkpoint, and visdet eval of that checkpoint
    # (no other argument: the data comes from its stored config) gives the same numbers
    report = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert report["bbox"]["AP"] == pytest.approx(metrics["val/mAP"], abs=1e-12)
    assert (run / "evaluation" / "report.html").is_file()
    assert (run / "evaluation" / "detections.json").is_file()
    evaluated = run_eval(
        eval_cfg(f"ckpt={written['best_checkpoint']}", f"paths.output_dir={run}/e")
    )
    for ours, theirs in (("AP", "mAP"), ("AP50", "mAP50"), ("AR100", "mAR_100")):
        assert evaluated["bbox"][ours] == pytest.approx(metrics[f"val/{theirs}"], abs=1e-12)
    detections = json.loads((run / "e" / "detections.json").read_text())
    assert {d["category_id"] for d in detections} <= {1, 2, 3, 4}
    # the validation loss is logged beside val/mAP
    assert all(k in metrics["last_fit_metrics"] for k in ("val/loss", "val/loss_cls"))
    assert metrics["last_fit_metrics"]["val/loss"] > 0
    torch.testing.assert_close(
        detector.roi_heads.box_predictor.cls_score.weight,
        best["detector.roi_heads.box_predictor.cls_score.weight"],
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resume_continues_epochs_and_optimizer_state(tmp_path):
    train(tiny_cfg(tmp_path, "trainer.max_epochs=1", "test=false"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=True)  # visdet checkpoints hold no pickled code
    assert first["epoch"] == 0 and first["global_step"] == 2
    metrics = train(tiny_cfg(tmp_path, "trainer.max_epochs=2", "test=false", f"ckpt_path={last}"))
    second = torch.load(last, weights_only=True)
    assert metrics["epochs"] == 2 and second["global_step"] == 4
    state = second["optimizer_states"][0]["state"]
    assert state and all("momentum_buffer" in s for s in state.values())
    assert second["lr_schedulers"][0]["last_epoch"] == 4  # the schedule continued


class _NanDetector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, images, targets=None):
        return {"loss_a": self.w * float("nan")}


def test_non_finite_loss_stops_with_a_clear_message():
    module = DetectorModule(_NanDetector(), optimizer=torch.optim.SGD)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss.*loss_a=nan"):
        module.training_step(([torch.rand(3, 8, 8)], [{}]), 0)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    "overrides,produced",
    [
        (["sched=one_cycle"], None),
        (["+optim/param_groups=discriminative", "+callbacks/freeze_unfreeze=default"], None),
        pytest.param(
            [
                "+callbacks/lr_finder=default",
                "callbacks.lr_finder.num_steps=6",
                "callbacks.lr_finder.suggestion=minimum",
            ],
            "lr_finder.png",
            marks=pytest.mark.slow,  # the finder's own tests run in the quick suite
        ),
    ],
)
def test_training_techniques_run_through_train(tmp_path, overrides, produced):
    metrics = train(tiny_cfg(tmp_path, "trainer.max_epochs=2", "test=false", *overrides))
    assert metrics["epochs"] == 2
    assert (tmp_path / "run" / "metrics.json").is_file()
    if produced:
        assert (tmp_path / "run" / produced).is_file()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lora_fine_tuning_from_a_checkpoint(tmp_path):
    train(tiny_cfg(tmp_path / "base", "trainer.max_epochs=1", "test=false"))
    base = tmp_path / "base" / "run" / "checkpoints" / "last.ckpt"
    metrics = train(
        tiny_cfg(
            tmp_path / "lora",
            "trainer.max_epochs=1",
            "+model/lora=default",
            f"model.init_from={base}",
        )
    )
    adapters = torch.load(tmp_path / "lora" / "run" / "lora_adapters.pt", weights_only=False)
    assert adapters["format"] == "visdet-lora-v1" and adapters["config"]["rank"] == 8
    assert all(
        ".lora_" in k or k.startswith("roi_heads.box_predictor") for k in adapters["state_dict"]
    )
    assert metrics["epochs"] == 1


@pytest.mark.slow  # a multi-second run; make test-full
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_progressive_resizing_through_train(tmp_path):
    train(
        tiny_cfg(
            tmp_path, "trainer.max_epochs=3", "test=false", "+callbacks/progressive_resize=default"
        )
    )
    lines = (tmp_path / "run" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    col = lines[0].split(",").index("train/image_size")
    sizes = [float(r.split(",")[col]) for r in lines[1:] if r.split(",")[col]]
    assert sizes == [32.0, 32.0, 32.0, 32.0, 64.0, 64.0]  # 2 steps per epoch: 32, 32, 64


@pytest.mark.slow  # subprocess runs of several seconds: make test-full
def test_resuming_from_a_malicious_checkpoint_stops_before_it_runs(tmp_path):
    import os

    from tiny_runs import run_train_py, tiny_overrides

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'marker'}",))

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "x": Payload()}, evil)
    out = run_train_py(
        [*tiny_overrides(tmp_path), f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'run'}"]
    )
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if "ckpt_path" in line]
    assert lines[-1].startswith(f"training stopped: ckpt_path: {evil} needs arbitrary unpickling")
    assert "refers to posix.system" in lines[-1] and "Traceback" not in out.stderr
    assert not (tmp_path / "marker").exists()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_run_that_never_validated_validates_at_the_end(tmp_path, capsys):
    cfg = tiny_cfg(
        tmp_path, "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=2", "test=false"
    )
    metrics = train(cfg)
    assert metrics["evaluated"] == "final weights validated after fit"
    assert 0 <= metrics["val/mAP"] <= 1 and metrics["best_checkpoint"] is None
    assert metrics["last_checkpoint"].endswith("last.ckpt")
    out = capsys.readouterr().out
    assert "(final weights validated after fit)" in out and "val/mAP=nan" not in out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_best_checkpoint_from_the_last_step_is_not_tested_again(tmp_path):
    # one epoch, validated once: the best checkpoint is the final weights, so testing it would
    # repeat that validation; its results are kept and equal visdet eval of the checkpoint
    metrics = train(tiny_cfg(tmp_path, "trainer.max_epochs=1"))
    best = metrics["best_checkpoint"]
    expected = f"{Path(best).name} (validated at the last step) on the val split"
    assert metrics["evaluated"] == expected
    evaluated = run_eval(eval_cfg(f"ckpt={best}", f"paths.output_dir={tmp_path}/e"))
    assert evaluated["bbox"]["AP"] == pytest.approx(metrics["val/mAP"], abs=1e-12)
    weights = read_state_dict(metrics["weights"])
    saved = torch.load(best, weights_only=True)["state_dict"]
    for k, v in weights.items():
        torch.testing.assert_close(v, saved[f"detector.{k}"])


@pytest.mark.slow  # a multi-second run; make test-full
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_older_checkpoint_with_numpy_state_resumes_only_when_opted_in(tmp_path):
    import numpy as np

    from visdet.models.weights.checkpoint_state import UnsafeWeightsError

    train(tiny_cfg(tmp_path, "trainer.max_epochs=1", "test=false"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    old = torch.load(last, weights_only=True)
    old["rng_states"]["numpy"] = np.random.get_state()  # noqa: NPY002 - how visdet stored it before
    old_file = tmp_path / "old.ckpt"
    torch.save(old, old_file)
    resume = ["trainer.max_epochs=2", "test=false", f"ckpt_path={old_file}"]
    with pytest.raises(UnsafeWeightsError, match="set trust_pickled_checkpoint=true"):
        train(tiny_cfg(tmp_path / "a", *resume))
    metrics = train(tiny_cfg(tmp_path / "b", *resume, "trust_pickled_checkpoint=true"))
    assert metrics["epochs"] == 2 and metrics["global_step"] == 4
