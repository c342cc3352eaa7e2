"""A convolution followed by a BatchNorm whose statistics are fixed, folded into one
convolution when no gradient is needed.

``conv_bn(conv, bn, x)`` is ``bn(conv(x))``. Without autograd (``torch.no_grad`` or
``torch.inference_mode``: evaluation, prediction, validation) and with a norm that only
applies fixed statistics (``FrozenBatchNorm2d``, or ``nn.BatchNorm2d`` in eval mode with
running statistics), the norm is the per-channel affine ``y = x * s + t`` with
``s = weight / sqrt(running_var + eps)`` and ``t = bias - running_mean * s``; folded into the
convolution (``conv.weight * s``, bias ``conv.bias * s + t``) it costs one pass over the
activations instead of three. The folded weights are kept on the convolution, in the
channels-last layout the CPU kernels prefer, and recomputed when a weight or a statistic
changes (an optimizer step, ``load_state_dict``, ``.to()``): each tensor's storage and
version counter are the cache key. In training (autograd on) nothing is folded: measured on
2 CPU cores, the folded backward was slower (docs/performance.md).

The result equals ``bn(conv(x))`` up to float rounding (about 1e-6 relative in float32).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from visdet.models.backbones.frozen_batch_norm import FrozenBatchNorm2d

_CACHE = "_visdet_folded_bn"  # attribute of the convolution holding (key, weight, bias)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    if type(conv) is not nn.Conv2d:  # a LoRA- or otherwise-wrapped conv keeps its own forward
        return False
    if isinstance(bn, FrozenBatchNorm2d):
        return True
    return (
        type(bn) is nn.BatchNorm2d
        and not bn.training
        and bn.track_running_stats
        and bn.running_mean is not None
    )


def _norm_tensors(bn: nn.Module) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor]:
    return bn.running_mean, bn.weight, bn.bias, bn.running_var


def folded_weights(conv: nn.Conv2d, bn: nn.Module) -> tuple[Tensor, Tensor]:
    """(weight, bias) of the convolution that computes ``bn(conv(x))`` for a foldable pair."""
    mean, gamma, beta, var = _norm_tensors(bn)
    scale = (var + bn.eps).rsqrt()
    if gamma is not None:
        scale = scale * gamma
    shift = -mean * scale
    if beta is not None:
        shift = shift + beta
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    weight = conv.weight * scale.view(-1, 1, 1, 1).to(conv.weight.dtype)
    return weight, shift.to(conv.weight.dtype)


def _cached(conv: nn.Conv2d, bn: nn.Module) -> tuple[Tensor, Tensor]:
    tensors = [conv.weight, conv.bias, *_norm_tensors(bn)]
    if any(t is not None and t.is_inference() for t in tensors):  # no version counter
        return folded_weights(conv, bn)
    key = tuple(
        None if t is None else (t.data_ptr(), t._version, t.dtype, t.device) for t in tensors
    ) + (bn.eps,)
    entry = getattr(conv, _CACHE, None)
    if entry is not None and entry[0] == key:
        return entry[1], entry[2]
    weight, bias = folded_weights(conv, bn)
    weight = weight.contiguous(memory_format=torch.channels_last)
    object.__setattr__(conv, _CACHE, (key, weight, bias))  # not a buffer: never in state_dict
    return weight, bias


def conv_bn(conv: nn.Module, bn: nn.Module, x: Tensor) -> Tensor:
    """``bn(conv(x))``, folded into one convolution when no gradient is needed (see the
    module docstring)."""
    if torch.is_grad_enabled() or not _foldable(conv, bn):
        return bn(conv(x))
    if torch.compiler.is_compiling() or torch.jit.is_scripting() or torch.jit.is_tracing():
        weight, bias = folded_weights(conv, bn)  # no Python-side cache inside a graph
    else:
        weight, bias = _cached(conv, bn)
    return conv._conv_forward(x, weight, bias)
