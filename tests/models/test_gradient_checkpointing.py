"""Gradient checkpointing of backbone stages (``model.backbone.checkpoint_stages``): equal
outputs, gradients and BatchNorm statistics to the plain forward in every backbone family,
less live memory, and clear errors for stage names a backbone does not have."""

import copy

import pytest
import torch

from visdet.bench.measure import peak_memory_mb
from visdet.models.backbones import build_backbone

# one of each family, with the parts that make checkpointing delicate: BatchNorm statistics
# (ResNet, MobileNetV3) and stochastic depth's random drops (ConvNeXt, Swin)
BACKBONES = {
    "resnet18": {},
    "mobilenet_v3_large": {"out_stages": ["c2", "c3", "c4", "c5"]},
    "convnext_tiny": {"drop_path": 0.3},
    "swin_t": {"drop_path": 0.3},
    "vit_s16": {},
}


def step(backbone, x, seed=0):
    torch.manual_seed(seed)  # the same stochastic-depth drops in both runs
    out = backbone(x)
    loss = sum((v.float() * (i + 1)).square().mean() for i, v in enumerate(out.values()))
    loss.backward()
    return out


@pytest.mark.parametrize("name", list(BACKBONES))
def test_checkpointed_stages_give_the_plain_gradients(name):
    torch.manual_seed(0)
    plain = build_backbone(name, **BACKBONES[name]).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpoint_stages("all")
    assert checkpointed.checkpointed == frozenset(plain.feature_info)
    x = torch.rand(2, 3, 64, 96)
    out_a, out_b = step(plain, x), step(checkpointed, x)
    for k in out_a:
        torch.testing.assert_close(out_b[k], out_a[k], rtol=0, atol=0)
    for (n, p), q in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        if p.grad is None:
            assert q.grad is None, n
        else:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7, msg=n)
    # running statistics moved once, as in the plain forward (not again in the recomputation)
    for (n, a), b in zip(plain.named_buffers(), checkpointed.buffers(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=n)


def test_checkpointing_keeps_fewer_activations_and_is_off_in_eval():
    torch.manual_seed(0)
    plain = build_backbone("resnet18").train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.checkpoint_stages(["c2", "c3"])
    x = torch.rand(2, 3, 384, 384)  # activations well above the weights' gradients
    peak_plain, _ = peak_memory_mb(lambda: step(plain, x))
    peak_ckpt, _ = peak_memory_mb(lambda: step(checkpointed, x))
    assert peak_ckpt < 0.9 * peak_plain, (peak_ckpt, peak_plain)  # measured: 0.83
    checkpointed.eval()
    with torch.no_grad():  # inference: the plain forward
        for k, v in checkpointed(x).items():
            torch.testing.assert_close(v, plain.eval()(x)[k])


def test_bad_stage_names_list_the_stages():
    backbone = build_backbone("resnet18")
    with pytest.raises(ValueError, match=r"model.backbone.checkpoint_stages: .* no stage 'c6'"):
        backbone.checkpoint_stages(["c6"])
    with pytest.raises(ValueError, match="a list of stage names or 'all'"):
        backbone.checkpoint_stages("c2")
    backbone.checkpoint_stages([])
    assert backbone.checkpointed == frozenset()


def test_the_model_config_key_reaches_the_backbone():
    from functools import partial

    from visdet.config.presets import build_detector
    from visdet.lightning import DetectorModule

    detector = build_detector("faster_rcnn_r18_fpn", 4, ["neck.out_channels=32"])
    module = DetectorModule(
        detector, partial(torch.optim.SGD, lr=0.01), backbone={"checkpoint_stages": ["c2", "c3"]}
    )
    assert module.detector.backbone.checkpointed == frozenset({"c2", "c3"})
    with pytest.raises(ValueError, match=r"allowed: \['checkpoint_stages', 'weights'\]"):
        DetectorModule(detector, partial(torch.optim.SGD, lr=0.01), backbone={"stages": []})
