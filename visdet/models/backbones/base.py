"""The backbone contract: what every visdet backbone provides, and all that necks, detectors,
encoders, parameter groups, LoRA, weight loading, export and benchmarks may rely on.

A backbone is an ``nn.Module`` whose ``forward(x [B, 3, H, W])`` returns an ordered dict of
named stage outputs (lowest stride first) and which describes itself:

- ``name`` / ``display_name``: e.g. ``resnet50`` / ``ResNet-50`` (export specs, reports);
- ``feature_info``: ``{stage: StageInfo(channels, stride)}`` for every stage it has, in order;
  ``out_stages``: the stages ``forward`` returns (a subset, same order);
- ``size_divisibility``: inputs whose sides are multiples of this give exact stage sizes;
- ``output_size(h, w, stage)``: the spatial size of a stage for an input of h x w;
- ``resolve_stage(stage)``: a stage name checked, ``"last"`` naming the last stage;
- ``traces_any_size``: whether a TorchScript trace at one size is valid at every size;
- ``truncate(stage)``: drop every layer after ``stage`` (an encoder cut at ``stage``);
  ``dropped`` names what was removed, so checkpoint loading skips those weights;
- ``param_groups()``: ``[(group name, (parameter-name prefixes, ...)), ...]`` shallowest first,
  covering every parameter, for discriminative learning rates and layer-wise decay;
- ``lora_pattern``: a regular expression on module names (relative to the backbone) of the
  layers LoRA adapts by default;
- ``adapt_state_dict(state)``: a foreign checkpoint of this architecture (torchvision, timm)
  in this backbone's parameter names, with keys it does not hold (a classifier) removed;
- ``checkpoint_stages(stages)``: gradient checkpointing of those stages in training
  (``visdet.models.backbones.checkpointing``; ``forward`` runs each stage's layers through
  ``run_stage``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from torch import Tensor, nn

from visdet.models.backbones.checkpointing import run_stage


@dataclass(frozen=True)
class StageInfo:
    """One stage output: its channels and its stride relative to the input image."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class of visdet backbones (see the module docstring for the contract).

    Subclasses set ``feature_info`` and ``out_stages`` in ``__init__`` and implement
    ``forward``, ``output_size``, ``truncate``, ``param_groups`` and ``adapt_state_dict``.
    """

    feature_info: OrderedDict[str, StageInfo]
    out_stages: tuple[str, ...]
    dropped: tuple[str, ...] = ()
    size_divisibility: int = 32
    lora_pattern: str = ""
    # whether one traced graph (torch.jit.trace) computes every input size as eager does;
    # False where Python branches on the feature-map size (Swin's window shift)
    traces_any_size: bool = True
    # the stages whose activations are recomputed in backward (checkpoint_stages)
    checkpointed: frozenset[str] = frozenset()

    @property
    def out_channels(self) -> dict[str, int]:
        """``{stage: channels}`` of every stage."""
        return {name: info.channels for name, info in self.feature_info.items()}

    @property
    def strides(self) -> dict[str, int]:
        """``{stage: stride}`` of every stage."""
        return {name: info.stride for name, info in self.feature_info.items()}

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    @property
    def display_name(self) -> str:
        return type(self).__name__

    def check_stages(self, stages, user: str) -> None:
        """ValueError naming ``user`` (e.g. ``neck FPN``) and this backbone when ``stages``
        asks for a stage this backbone does not return."""
        missing = [s for s in stages if s not in self.out_stages]
        if missing:
            raise ValueError(
                f"{user} needs stage(s) {missing} but backbone {type(self).__name__} "
                f"returns {list(self.out_stages)} (of {list(self.feature_info)})"
            )

    def resolve_stage(self, stage: str, key: str = "stage") -> str:
        """``stage`` itself, or the backbone's last stage for ``"last"``; a name the backbone
        does not have is a ValueError naming ``key`` and listing its stages."""
        if stage == "last":
            return list(self.feature_info)[-1]
        if stage not in self.feature_info:
            raise ValueError(
                f"{key}: backbone {self.display_name} has no stage {stage!r}; its stages are "
                f"{list(self.feature_info)} (or 'last')"
            )
        return stage

    def is_dropped(self, key: str) -> bool:
        """Whether state-dict ``key`` belongs to a layer ``truncate`` removed."""
        return any(key == d or key.startswith(f"{d}.") for d in self.dropped)

    def checkpoint_stages(self, stages) -> None:
        """Recompute the activations of ``stages`` (stage names, ``"all"`` or ``[]``) in
        backward instead of keeping them (``model.backbone.checkpoint_stages``)."""
        if stages == "all":
            stages = list(self.feature_info)
        if isinstance(stages, str) or not all(isinstance(s, str) for s in stages):
            raise ValueError(
                "model.backbone.checkpoint_stages must be a list of stage names or 'all', "
                f"got {stages!r}"
            )
        self.checkpointed = frozenset(
            self.resolve_stage(s, "model.backbone.checkpoint_stages") for s in stages
        )

    def run_stage(
        self, stage: str | None, module: nn.Module, x: Tensor, per_block: bool = True
    ) -> Tensor:
        """``module(x)``, checkpointed when ``stage`` is one of ``checkpointed`` (block by
        block when ``module`` is an ``nn.Sequential`` of blocks and ``per_block``)."""
        return run_stage(module, x, stage in self.checkpointed, per_block)

    def output_size(self, height: int, width: int, stage: str) -> tuple[int, int]:
        raise NotImplementedError

    def truncate(self, stage: str) -> None:
        raise NotImplementedError

    def param_groups(self) -> list[tuple[str, tuple[str, ...]]]:
        raise NotImplementedError

    def adapt_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError
