"""The one-stage families end to end through the Hydra compose API: a tiny run with the
training techniques (one-cycle, discriminative LRs with the family's groups, progressive
resizing), then ``visdet eval`` and ``Detector.predict`` on its checkpoint; LoRA fine-tuning
from a checkpoint with the family's default patterns. FCOS runs in the quick suite, RetinaNet
and ATSS in the slow one (same code path, the skeleton they share)."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from tiny_runs import CONF, tiny_overrides

from visdet.inference import Detector
from visdet.runs.evaluate import run_eval
from visdet.runs.train_detector import train

FASTER_RCNN_ONLY = ("model.detector.representation_size", "model.detector.rpn_")
PRESETS = [
    "fcos_r18_fpn",
    pytest.param("retinanet_r18_fpn", marks=pytest.mark.slow),
    pytest.param("atss_r18_fpn", marks=pytest.mark.slow),
]


def dense_cfg(tmp_path, preset, *extra):
    # 64 channels: GroupNorm(32) needs two per group on the 1x1 P7 of 64 px images
    overrides = [o for o in tiny_overrides(tmp_path, f"model={preset}", "neck.out_channels=64",
                                           "model.detector.score_thresh=0.01", *extra)
                 if not o.startswith(FASTER_RCNN_ONLY)]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={tmp_path / 'run'}", *overrides])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("preset", PRESETS)
def test_tiny_run_with_techniques_then_eval_and_predict(tmp_path, preset):
    metrics = train(dense_cfg(tmp_path, preset, "trainer.max_epochs=2", "test=false",
                              "sched=one_cycle", "+optim/param_groups=discriminative",
                              "+callbacks/progressive_resize=default"))  # fmt: skip
    assert metrics["epochs"] == 2 and 0 <= metrics["val/mAP"] <= 1
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=[f"ckpt={ckpt}", f"paths.output_dir={tmp_path / 'eval'}",
                                         f"paths.data_dir={tmp_path / 'data'}"])  # fmt: skip
    result = run_eval(cfg)
    assert 0 <= result["bbox"]["AP"] <= 1
    detector = Detector.from_checkpoint(ckpt)
    classes = {"fcos": "FCOS", "retinanet": "RetinaNet", "atss": "ATSS"}
    assert type(detector.detector).__name__ == classes[preset.split("_")[0]]
    found = detector.predict(torch.rand(3, 80, 60))[0]
    assert set(found) >= {"boxes", "scores", "labels"}
    if len(found["boxes"]):
        assert found["boxes"][:, 2].max() <= 60 and found["boxes"][:, 3].max() <= 80


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("preset", ["retinanet_r18_fpn", "fcos_r18_fpn", "atss_r18_fpn"])
def test_lora_fine_tuning_with_the_familys_patterns(tmp_path, preset):
    train(dense_cfg(tmp_path / "base", preset, "trainer.max_epochs=1", "test=false"))
    base = tmp_path / "base" / "run" / "checkpoints" / "last.ckpt"
    metrics = train(dense_cfg(tmp_path / "lora", preset, "trainer.max_epochs=1", "test=false",
                              "+model/lora=default", f"model.init_from={base}"))  # fmt: skip
    adapters = torch.load(tmp_path / "lora" / "run" / "lora_adapters.pt", weights_only=True)
    keys = adapters["state_dict"]
    assert any(".lora_" in k for k in keys)
    assert all(".lora_" in k or "cls_logits" in k for k in keys)
    assert metrics["epochs"] == 1


@pytest.mark.slow  # two processes of several seconds: make test-full
def test_ddp_on_two_cpu_processes(tmp_path):
    import json

    from tiny_runs import run_train_py

    overrides = [o for o in tiny_overrides(tmp_path, "model=atss_r18_fpn", "neck.out_channels=64",
                                           "trainer=ddp_cpu", f"hydra.run.dir={tmp_path / 'run'}",
                                           "data.batch_size=2", "trainer.max_epochs=2")
                 if not o.startswith(FASTER_RCNN_ONLY)]  # fmt: skip
    proc = run_train_py(overrides, cwd=tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["global_step"] == 4  # 8 images / 2 ranks / 2
    assert proc.stdout.count("final: val/mAP=") == 1
