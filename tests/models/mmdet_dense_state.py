"""State dicts in MMDetection's key naming for its one-stage ResNet-50 FPN detectors
(RetinaNet, FCOS), random but seeded: the shared backbone, neck and head towers; each test
adds its own head layers (``head_shapes``) and extras."""

import math

import torch
import torch.nn.functional as F

from visdet.models.backbones import ResNet


def mmdet_dense_state(head_shapes: dict[str, tuple[int, ...]], p6_in_channels: int,
                      g: torch.Generator) -> dict[str, torch.Tensor]:  # fmt: skip
    """ResNet-50 (``backbone.*``, perturbed, positive running variances), FPN C3-C5 with P6 from
    a ``p6_in_channels`` input (2048: C5, MMDetection's ``on_input``; 256: P5, ``on_output``)
    and P7, 4 convs per head tower, plus ``head_shapes`` (name -> conv weight shape); every
    conv with a bias."""
    state = {f"backbone.{k}": v for k, v in ResNet(50, norm="frozen_bn").state_dict().items()}
    shapes = {}
    for i, c in enumerate((512, 1024, 2048)):
        shapes[f"neck.lateral_convs.{i}.conv"] = (256, c, 1, 1)
        shapes[f"neck.fpn_convs.{i}.conv"] = (256, 256, 3, 3)
    shapes["neck.fpn_convs.3.conv"] = (256, p6_in_channels, 3, 3)
    shapes["neck.fpn_convs.4.conv"] = (256, 256, 3, 3)
    for tower in ("cls_convs", "reg_convs"):
        for i in range(4):
            shapes[f"bbox_head.{tower}.{i}.conv"] = (256, 256, 3, 3)
    shapes.update(head_shapes)
    for name, shape in shapes.items():
        fan_in = math.prod(shape[1:])
        state[f"{name}.weight"] = torch.randn(*shape, generator=g) / math.sqrt(fan_in)
        state[f"{name}.bias"] = torch.randn(shape[0], generator=g) * 0.1
    for k, v in state.items():
        if k.startswith("backbone.") and v.is_floating_point():
            state[k] = v + torch.randn(v.shape, generator=g) * (0.05 if v.dim() > 1 else 0.01)
        if k.startswith("backbone.") and k.endswith("running_var"):
            state[k] = state[k].abs() + 0.5
    return state


def conv(x, state, name, stride=1, padding=1, bias=True):
    """MMDetection's conv ``name`` of ``state`` in float64."""
    b = state[f"{name}.bias"].double() if bias else None
    return F.conv2d(x, state[f"{name}.weight"].double(), b, stride, padding)


def mmdet_fpn_p3_p5(c3, c4, c5, state):
    """MMDetection's FPN (start_level=1): laterals, nearest top-down sums, 3x3 outputs."""
    laterals = [conv(c, state, f"neck.lateral_convs.{i}.conv", padding=0)
                for i, c in enumerate((c3, c4, c5))]  # fmt: skip
    for i in (2, 1):
        laterals[i - 1] = laterals[i - 1] + F.interpolate(
            laterals[i], size=laterals[i - 1].shape[2:]
        )
    return [conv(x, state, f"neck.fpn_convs.{i}.conv") for i, x in enumerate(laterals)]
