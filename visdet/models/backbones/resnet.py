"""ResNet-18/34/50/101 (He et al. 2016) with torchvision's state-dict layout.

Module names equal torchvision's ``resnet*`` (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``fc``), so a torchvision ImageNet checkpoint loads with ``strict=True``. Bottleneck blocks
stride in the 3x3 convolution (ResNet v1.5), as torchvision does. Implements the backbone
contract (visdet.models.backbones.base): stages ``c2``..``c5`` at strides 4..32.
``style="caffe"`` strides in the first 1x1 convolution instead (the original ResNet, MSRA's
and Detectron's caffe weights, MMDetection's ``style='caffe'``); the state dict is the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from visdet.models.backbones.base import Backbone, StageInfo
from visdet.models.backbones.conv_bn import conv_bn
from visdet.models.backbones.frozen_batch_norm import FrozenBatchNorm2d

_NORMS = {"bn": nn.BatchNorm2d, "frozen_bn": FrozenBatchNorm2d}


def _shortcut(downsample: nn.Sequential | None, x: Tensor) -> Tensor:
    """The identity, or the projection shortcut (conv, norm)."""
    return x if downsample is None else conv_bn(downsample[0], downsample[1], x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, in_ch: int, ch: int, stride: int, norm: type[nn.Module], downsample: nn.Module | None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride, 1, bias=False)
        self.bn1 = norm(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False)
        self.bn2 = norm(ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = _shortcut(self.downsample, x)
        out = self.relu(conv_bn(self.conv1, self.bn1, x))
        out = conv_bn(self.conv2, self.bn2, out)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, in_ch: int, ch: int, stride: int, norm: type[nn.Module], downsample: nn.Module | None,
        caffe: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 1, stride if caffe else 1, bias=False)
        self.bn1 = norm(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1 if caffe else stride, 1, bias=False)
        self.bn2 = norm(ch)
        self.conv3 = nn.Conv2d(ch, ch * 4, 1, bias=False)
        self.bn3 = norm(ch * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = _shortcut(self.downsample, x)
        out = self.relu(conv_bn(self.conv1, self.bn1, x))
        out = self.relu(conv_bn(self.conv2, self.bn2, out))
        out = conv_bn(self.conv3, self.bn3, out)
        return self.relu(out + identity)


ARCHITECTURES: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}

STAGE_NAMES = ("c2", "c3", "c4", "c5")  # outputs of layer1..layer4, strides 4..32


class ResNet(Backbone):
    """ResNet trunk returning the selected stages.

    Args:
        depth: 18, 34, 50 or 101.
        out_stages: which of ``"c2"``..``"c5"`` (outputs of layer1..layer4) forward returns.
        frozen_stages: -1 trains everything; k >= 0 freezes the stem (conv1, bn1) and
            layer1..layerk (no gradients; their BatchNorm stays in eval mode).
        norm: ``"frozen_bn"`` (FrozenBatchNorm2d, the detection default) or ``"bn"``.
        num_classes: if given, adds torchvision's ``avgpool`` + ``fc`` classifier and forward
            also returns ``"logits"``; keep 1000 to load an ImageNet checkpoint strictly.
        zero_init_residual: zero the last BN weight of each block (torchvision option).
        style: ``"pytorch"`` (stride in the 3x3 conv, torchvision) or ``"caffe"`` (stride in
            the first 1x1 conv of a bottleneck; basic blocks are the same in both).
    """

    lora_pattern = r"layer[34]\..*conv"  # the 3x3/1x1 convs of the last two stages

    def __init__(
        self,
        depth: int = 50,
        out_stages: Sequence[str] = STAGE_NAMES,
        frozen_stages: int = -1,
        norm: str = "bn",
        num_classes: int | None = None,
        zero_init_residual: bool = False,
        style: str = "pytorch",
    ) -> None:
        super().__init__()
        if style not in ("pytorch", "caffe"):
            raise ValueError(f"style must be 'pytorch' or 'caffe', got {style!r}")
        if depth not in ARCHITECTURES:
            raise ValueError(f"depth must be one of {sorted(ARCHITECTURES)}, got {depth!r}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {sorted(_NORMS)}, got {norm!r}")
        bad = [s for s in out_stages if s not in STAGE_NAMES]
        if bad or not out_stages:
            raise ValueError(
                f"out_stages must be a non-empty subset of {STAGE_NAMES}, got {list(out_stages)}"
            )
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [-1, 4], got {frozen_stages}")
        block, counts = ARCHITECTURES[depth]
        norm_layer = _NORMS[norm]
        self.depth = depth
        self.style = style
        extra = {"caffe": True} if style == "caffe" and block is Bottleneck else {}
        self.out_stages = tuple(s for s in STAGE_NAMES if s in out_stages)
        self.frozen_stages = frozen_stages
        self.dropped: tuple[str, ...] = ()  # layers removed by truncate()

        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        self.feature_info: OrderedDict[str, StageInfo] = OrderedDict()
        for i, (count, width) in enumerate(zip(counts, (64, 128, 256, 512), strict=True)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or in_ch != width * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(in_ch, width * block.expansion, 1, stride, bias=False),
                    norm_layer(width * block.expansion),
                )
            blocks = [block(in_ch, width, stride, norm_layer, downsample, **extra)]
            in_ch = width * block.expansion
            blocks += [block(in_ch, width, 1, norm_layer, None) for _ in range(count - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info[STAGE_NAMES[i]] = StageInfo(in_ch, 4 * 2**i)
        self.num_classes = num_classes
        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights(zero_init_residual)
        self._freeze()

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last_bn = m.bn3 if isinstance(m, Bottleneck) else getattr(m, "bn2", None)
                if isinstance(m, (BasicBlock, Bottleneck)) and isinstance(last_bn, nn.BatchNorm2d):
                    nn.init.zeros_(last_bn.weight)

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        mods: list[nn.Module] = [self.conv1, self.bn1]
        return mods + [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]

    def _freeze(self) -> None:
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        super().train(mode)
        for m in self._frozen_modules():
            m.eval()  # frozen stages keep their BatchNorm statistics
        return self

    def truncate(self, stage: str) -> None:
        """Drop the layers after ``stage`` (an encoder cut at ``stage`` never runs them).

        Their names are kept in ``dropped`` so checkpoint loading can skip their weights."""
        if stage not in STAGE_NAMES:
            raise ValueError(f"stage must be one of {STAGE_NAMES}, got {stage!r}")
        if self.num_classes is not None:
            raise ValueError("a ResNet with a classifier (num_classes) cannot be truncated")
        for i in range(STAGE_NAMES.index(stage) + 1, len(STAGE_NAMES)):
            setattr(self, f"layer{i + 1}", nn.Identity())
            self.dropped = (*self.dropped, f"layer{i + 1}")
        self.out_stages = tuple(s for s in self.out_stages if s <= stage) or (stage,)

    @property
    def name(self) -> str:
        return f"resnet{self.depth}"

    @property
    def display_name(self) -> str:
        return f"ResNet-{self.depth}"

    def param_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """Stem, then layer1..layer4 (then the classifier, when there is one)."""
        groups = [("stem", ("conv1.", "bn1."))]
        groups += [(f"layer{i}", (f"layer{i}.",)) for i in range(1, 5)]
        return groups + ([("fc", ("fc.",))] if self.num_classes is not None else [])

    def adapt_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """A torchvision ResNet state dict (same names) without what this backbone lacks:
        the ImageNet classifier ``fc.*`` (without ``num_classes``) and dropped layers."""
        if "conv1.weight" not in state:
            raise ValueError(
                "expected a torchvision ResNet state dict (conv1.*, layer1.*, ...); "
                f"first keys: {list(state)[:5]}"
            )
        skipped = (*(() if self.num_classes is not None else ("fc",)), *self.dropped)
        return {k: v for k, v in state.items() if k.split(".")[0] not in skipped}

    def output_size(self, height: int, width: int, stage: str) -> tuple[int, int]:
        """Spatial size (h, w) of ``stage`` for an input of height x width.

        The stem conv, the max-pool and every stride-2 conv map n to floor((n - 1) / 2) + 1.
        """
        if stage not in STAGE_NAMES:
            raise ValueError(f"stage must be one of {STAGE_NAMES}, got {stage!r}")
        if height < 1 or width < 1:
            raise ValueError(f"input size must be >= 1, got {height}x{width}")
        for _ in range(STAGE_NAMES.index(stage) + 2):
            height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        return height, width

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        """x: [B, 3, H, W] -> OrderedDict of the selected stages (+ ``logits`` [B, classes])."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"ResNet input must be [B, 3, H, W], got {list(x.shape)}")
        x = self.maxpool(self.relu(conv_bn(self.conv1, self.bn1, x)))
        out: OrderedDict[str, Tensor] = OrderedDict()
        last = STAGE_NAMES[-1] if self.num_classes is not None else self.out_stages[-1]
        for i, name in enumerate(STAGE_NAMES):
            x = self.run_stage(name, getattr(self, f"layer{i + 1}"), x)
            if name in self.out_stages:
                out[name] = x
            if name == last:
                break
        if self.num_classes is not None:
            out["logits"] = self.fc(self.avgpool(x).flatten(1))
        return out
