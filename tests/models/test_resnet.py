import pytest
import torch
from torch import nn

from visdet.models import FrozenBatchNorm2d, ResNet

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def torchvision_layout(depth: int) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of torchvision's resnet<depth>(num_classes=1000).state_dict(), written
    out from the published architecture (not from visdet's code)."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    keys["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    bottleneck = depth >= 50
    expansion = 4 if bottleneck else 1
    in_ch = 64
    for stage, (count, width) in enumerate(zip(BLOCKS[depth], (64, 128, 256, 512))):
        for b in range(count):
            p = f"layer{stage + 1}.{b}"
            if bottleneck:
                keys[f"{p}.conv1.weight"] = (width, in_ch, 1, 1)
                bn(f"{p}.bn1", width)
                keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
                bn(f"{p}.bn2", width)
                keys[f"{p}.conv3.weight"] = (width * 4, width, 1, 1)
                bn(f"{p}.bn3", width * 4)
            else:
                keys[f"{p}.conv1.weight"] = (width, in_ch, 3, 3)
                bn(f"{p}.bn1", width)
                keys[f"{p}.conv2.weight"] = (width, width, 3, 3)
                bn(f"{p}.bn2", width)
            if b == 0 and (stage > 0 or in_ch != width * expansion):
                keys[f"{p}.downsample.0.weight"] = (width * expansion, in_ch, 1, 1)
                bn(f"{p}.downsample.1", width * expansion)
            in_ch = width * expansion
    keys["fc.weight"] = (1000, in_ch)
    keys["fc.bias"] = (1000,)
    return keys


def test_layout_counts_match_torchvision():
    # len(torchvision.models.resnetX().state_dict()) as published
    assert len(torchvision_layout(18)) == 122
    assert len(torchvision_layout(50)) == 320


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
@pytest.mark.parametrize("norm", ["bn", "frozen_bn"])
def test_torchvision_state_dict_loads_strictly(depth, norm):
    layout = torchvision_layout(depth)
    state = {k: (torch.randn(s) if s else torch.tensor(7)) for k, s in layout.items()}
    model = ResNet(depth, norm=norm, num_classes=1000)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert torch.equal(model.bn1.running_var, state["bn1.running_var"])
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        k: s for k, s in layout.items() if norm == "bn" or not k.endswith("num_batches_tracked")
    }
    assert own == expected


def test_missing_and_unexpected_keys_fail_strict_load():
    state = {k: torch.zeros(s) for k, s in torchvision_layout(18).items()}
    with pytest.raises(RuntimeError, match="fc.weight"):
        ResNet(18).load_state_dict(state, strict=True)  # no classifier: fc keys unexpected


@pytest.mark.parametrize(
    "depth,channels", [(18, (64, 128, 256, 512)), (50, (256, 512, 1024, 2048))]
)
def test_stage_shapes_and_strides(depth, channels):
    model = ResNet(depth).eval()
    x = torch.rand(2, 3, 96, 128)
    out = model(x)
    assert list(out) == ["c2", "c3", "c4", "c5"]
    for (name, feat), ch in zip(out.items(), channels):
        stride = model.strides[name]
        assert feat.shape == (2, ch, 96 // stride, 128 // stride)
        assert model.out_channels[name] == ch
    assert [model.strides[n] for n in out] == [4, 8, 16, 32]


def test_selected_stages_and_logits():
    model = ResNet(18, out_stages=("c3", "c5"), num_classes=10).eval()
    out = model(torch.rand(1, 3, 64, 64))
    assert list(out) == ["c3", "c5", "logits"]
    assert out["logits"].shape == (1, 10)
    with pytest.raises(ValueError, match="out_stages"):
        ResNet(18, out_stages=("c6",))
    with pytest.raises(ValueError, match="depth"):
        ResNet(42)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.rand(1, 1, 64, 64))


def test_frozen_stages_get_no_gradient_and_keep_statistics():
    model = ResNet(18, frozen_stages=2, norm="bn").train()
    stats_before = model.layer2[0].bn1.running_mean.clone()
    live_before = model.layer3[0].bn1.running_mean.clone()
    out = model(torch.rand(2, 3, 64, 64) * 5)
    sum(o.sum() for o in out.values()).backward()
    for module in (model.conv1, model.bn1, model.layer1, model.layer2):
        for p in module.parameters():
            assert not p.requires_grad and p.grad is None
    for p in model.layer3.parameters():
        assert p.grad is not None
    assert torch.equal(model.layer2[0].bn1.running_mean, stats_before)
    assert not torch.equal(model.layer3[0].bn1.running_mean, live_before)


def test_frozen_batch_norm_equals_batch_norm_in_eval():
    bn = nn.BatchNorm2d(5).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 3)
    frozen = FrozenBatchNorm2d(5)
    frozen.load_state_dict(bn.state_dict(), strict=True)  # num_batches_tracked is dropped
    x = torch.randn(3, 5, 4, 4)
    torch.testing.assert_close(frozen(x), bn(x), rtol=1e-5, atol=1e-6)
    assert not list(frozen.parameters())
