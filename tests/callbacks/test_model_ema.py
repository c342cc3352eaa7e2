"""Model EMA: the average against its formula (warm-up, accumulation, integer buffers), the
checkpoint swap and its undoing on resume, and a run that validates both weights and keeps
the better."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn
from tiny_runs import tiny_cfg
from torch import nn

from visdet.callbacks import ModelEMA
from visdet.callbacks.model_ema import ema_decay
from visdet.runs.train_detector import train


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)


def fake_module():
    return SimpleNamespace(detector=Net(), selected_weights="raw")


def trainer(step, fn=TrainerFn.FITTING):
    return SimpleNamespace(global_step=step, sanity_checking=False, state=SimpleNamespace(fn=fn))


def perturb(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in net.state_dict().values():
            if v.dtype.is_floating_point:
                v.copy_(torch.randn(v.shape, generator=g))
        net.bn.num_batches_tracked.fill_(seed)


def test_decay_follows_the_warm_up_formula():
    for n in (1, 10, 2000, 10**6):
        assert ema_decay(0.9998, 2000, n) == pytest.approx(0.9998 * (1 - math.exp(-n / 2000)))
    assert ema_decay(0.99, 0, 1) == 0.99
    assert ema_decay(0.99, 2000, 10**9) == pytest.approx(0.99)


def test_the_average_equals_the_recurrence_in_float64():
    module = fake_module()
    cb = ModelEMA(decay=0.9, warmup_steps=3)
    cb.on_fit_start(trainer(0), module)
    expected = {k: v.double().clone() for k, v in module.detector.state_dict().items()}
    for step in range(1, 6):
        perturb(module.detector, step)
        cb.on_train_batch_end(trainer(step), module, None, None, 0)
        cb.on_train_batch_end(trainer(step), module, None, None, 1)  # accumulation: no step
        d = 0.9 * (1 - math.exp(-step / 3))
        for k, v in module.detector.state_dict().items():
            if v.dtype.is_floating_point:
                expected[k] = d * expected[k] + (1 - d) * v.double()
    assert cb.updates == 5
    ema = cb.ema.state_dict()
    for k, v in expected.items():
        if v.dtype.is_floating_point and "num_batches" not in k:
            torch.testing.assert_close(ema[k].double(), v, rtol=1e-6, atol=1e-6)
    assert int(ema["bn.num_batches_tracked"]) == 5  # integer buffers are copied, not averaged
    assert not any(p.requires_grad for p in cb.ema.parameters())


@pytest.mark.parametrize("selected", ["raw", "ema"])
def test_a_checkpoint_holds_the_selected_weights_and_resume_undoes_the_swap(selected):
    module = fake_module()
    cb = ModelEMA(decay=0.5, warmup_steps=0)
    cb.on_fit_start(trainer(0), module)
    perturb(module.detector, 1)
    cb.on_train_batch_end(trainer(1), module, None, None, 0)
    perturb(module.detector, 2)
    raw = {k: v.clone() for k, v in module.detector.state_dict().items()}
    ema = {k: v.clone() for k, v in cb.ema.state_dict().items()}
    module.selected_weights = selected
    checkpoint = {"state_dict": {f"detector.{k}": v.clone() for k, v in raw.items()}}
    cb.on_save_checkpoint(trainer(1), module, checkpoint)
    held = ema if selected == "ema" else raw
    for k, v in held.items():
        torch.testing.assert_close(checkpoint["state_dict"][f"detector.{k}"], v)
    assert checkpoint["ema"]["selected"] == selected and checkpoint["ema"]["updates"] == 1

    # evaluating the checkpoint (test/validate): the stored weights stay as they are
    evaluated = fake_module()
    evaluated.detector.load_state_dict({k[9:]: v for k, v in checkpoint["state_dict"].items()})
    ModelEMA().on_load_checkpoint(trainer(1, TrainerFn.TESTING), evaluated, checkpoint)
    for k, v in held.items():
        torch.testing.assert_close(evaluated.detector.state_dict()[k], v)

    # resuming fit: raw weights back in the detector, the average back in the callback
    resumed, cb2 = fake_module(), ModelEMA(decay=0.5, warmup_steps=0)
    resumed.detector.load_state_dict({k[9:]: v for k, v in checkpoint["state_dict"].items()})
    cb2.on_load_checkpoint(trainer(1), resumed, checkpoint)
    cb2.on_fit_start(trainer(1), resumed)
    for k in raw:
        torch.testing.assert_close(resumed.detector.state_dict()[k], raw[k])
        torch.testing.assert_close(cb2.ema.state_dict()[k], ema[k])
    assert cb2.updates == 1 and resumed.selected_weights == selected


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match=r"callbacks.ema.decay must be in \[0, 1\)"):
        ModelEMA(decay=1.0)
    with pytest.raises(ValueError, match="callbacks.ema.warmup_steps must be >= 0"):
        ModelEMA(warmup_steps=-1)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_run_validates_both_weights_and_keeps_the_better(tmp_path):
    ema = ["+callbacks/ema=default", "callbacks.ema.decay=0.5", "callbacks.ema.warmup_steps=0"]
    metrics = train(tiny_cfg(tmp_path, "trainer.max_epochs=2", *ema))
    fit = metrics["last_fit_metrics"]
    raw, averaged = fit["val_raw/mAP"], fit["val_ema/mAP"]
    assert fit["val/mAP"] == max(raw, averaged)
    assert fit["val/ema_selected"] == float(averaged > raw)
    best = torch.load(metrics["best_checkpoint"], weights_only=True)
    assert best["ema"]["updates"] == best["global_step"]  # one update per optimizer step
    # the final test of the best checkpoint evaluates the weights it holds, the selected
    # ones: it reproduces the score the checkpoint was kept for
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    (score,) = [
        float(state["best_model_score"])
        for key, state in best["callbacks"].items()
        if "'monitor': 'val/mAP'" in key
    ]
    assert written["val/mAP"] == pytest.approx(score, abs=1e-9)
