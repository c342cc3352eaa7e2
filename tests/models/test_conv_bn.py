"""conv_bn: a conv + fixed-statistics norm folded into one conv without autograd, equal to
the two modules applied in turn; the channels-last inference batch of DetectionTransform."""

import pytest
import torch
from torch import nn

from visdet.models.backbones.conv_bn import conv_bn
from visdet.models.backbones.frozen_batch_norm import FrozenBatchNorm2d
from visdet.models.backbones.mobilenet_v3 import MobileNetV3
from visdet.models.backbones.resnet import ResNet
from visdet.models.detectors.transform import DetectionTransform


def _randomised(norm: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    c = norm.num_features
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(c, generator=gen))
        norm.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
        norm.weight.copy_(torch.randn(c, generator=gen))
        norm.bias.copy_(torch.randn(c, generator=gen))
    return norm


def _pair(norm_cls, bias: bool, stride: int = 1, groups: int = 1):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, stride, 1, groups=groups, bias=bias)
    return conv, _randomised(norm_cls(12), 1)


@pytest.mark.parametrize("norm_cls", [FrozenBatchNorm2d, nn.BatchNorm2d])
@pytest.mark.parametrize("bias,stride,groups", [(False, 1, 1), (True, 2, 1), (False, 1, 4)])
def test_folded_equals_conv_then_norm(norm_cls, bias, stride, groups):
    conv, norm = _pair(norm_cls, bias, stride, groups)
    norm.eval()
    x = torch.randn(2, 8, 13, 11, generator=torch.Generator().manual_seed(2))
    expected = norm(conv(x))
    with torch.no_grad():
        got = conv_bn(conv, norm, x)
    assert hasattr(conv, "_visdet_folded_bn")  # it was folded, not run as two modules
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(conv_bn(conv, norm, x), expected.detach(), rtol=1e-5, atol=1e-5)


def test_autograd_runs_the_two_modules_and_keeps_gradients():
    conv, norm = _pair(FrozenBatchNorm2d, False)
    x = torch.randn(2, 8, 9, 9, requires_grad=True)
    conv_bn(conv, norm, x).square().sum().backward()
    assert not hasattr(conv, "_visdet_folded_bn")
    grad = conv.weight.grad.clone()
    conv.weight.grad = None
    norm(conv(x)).square().sum().backward()
    torch.testing.assert_close(conv.weight.grad, grad)


def test_training_mode_batch_norm_is_not_folded():
    conv, norm = _pair(nn.BatchNorm2d, False)
    norm.train()
    x = torch.randn(4, 8, 9, 9)
    with torch.no_grad():
        got = conv_bn(conv, norm, x)  # batch statistics, as bn(conv(x)) in train mode
    assert not hasattr(conv, "_visdet_folded_bn")
    norm.eval()
    with torch.no_grad():
        out = conv(x)
        mean, var = (
            out.mean((0, 2, 3), keepdim=True),
            out.var((0, 2, 3), unbiased=False, keepdim=True),
        )
        expected = (out - mean) / (var + norm.eps).sqrt() * norm.weight.view(1, -1, 1, 1)
        expected = expected + norm.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_cache_follows_weight_and_statistics_changes():
    conv, norm = _pair(FrozenBatchNorm2d, True)
    x = torch.randn(1, 8, 7, 7)
    with torch.no_grad():
        conv_bn(conv, norm, x)
        conv.weight.mul_(-2.0)  # an in-place update, as an optimizer step
        norm.load_state_dict(_randomised(FrozenBatchNorm2d(12), 7).state_dict())
        torch.testing.assert_close(conv_bn(conv, norm, x), norm(conv(x)), rtol=1e-5, atol=1e-5)
        conv.to(torch.float64)
        norm.to(torch.float64)
        got = conv_bn(conv, norm, x.double())
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, norm(conv(x.double())))
    assert not any("folded" in k for k in conv.state_dict())


@pytest.mark.parametrize(
    "build",
    [
        lambda: ResNet(18, frozen_stages=1, norm="frozen_bn"),
        lambda: ResNet(50, frozen_stages=1, norm="bn", out_stages=("c2", "c3")),
        lambda: MobileNetV3(norm="frozen_bn"),
    ],
    ids=["resnet18_frozen_bn", "resnet50_bn", "mobilenet_v3"],
)
def test_backbone_inference_equals_autograd_forward(build):
    torch.manual_seed(0)
    model = build().eval()
    norms = (FrozenBatchNorm2d, nn.BatchNorm2d)
    for i, m in enumerate(m for m in model.modules() if isinstance(m, norms)):
        _randomised(m, i)
    x = torch.rand(2, 3, 64, 96)
    expected = model(x)
    with torch.no_grad():
        got = model(x.contiguous(memory_format=torch.channels_last))
    assert sum(hasattr(m, "_visdet_folded_bn") for m in model.modules()) >= 15
    for name in expected:  # rounding grows through 8 blocks: tolerance relative to the scale
        scale = float(expected[name].abs().max())
        torch.testing.assert_close(got[name], expected[name].detach(), rtol=0, atol=1e-5 * scale)


def test_transform_batch_is_channels_last_only_without_autograd():
    images = [torch.rand(3, 40, 50), torch.rand(3, 30, 60)]
    transform = DetectionTransform(min_size=None).eval()
    train_batch, _ = transform(images)
    with torch.no_grad():
        batch, _ = transform(images)
        plain, _ = DetectionTransform(min_size=None, channels_last=False).eval()(images)
    assert train_batch.tensor.is_contiguous() and plain.tensor.is_contiguous()
    assert batch.tensor.is_contiguous(memory_format=torch.channels_last)
    assert not batch.tensor.is_contiguous()
    torch.testing.assert_close(batch.tensor, train_batch.tensor)
    assert batch.image_sizes == train_batch.image_sizes == [(40, 50), (30, 60)]
