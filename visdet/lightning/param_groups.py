"""Discriminative learning rates: parameter groups by depth, each with its own LR.

Layers are grouped by name prefix, shallowest first. The default order fits visdet's
detectors (``backbone.conv1``/``bn1`` stem, ``backbone.layer1..4``, ``neck``, ``rpn``,
``roi_heads``) and encoders (``backbone.*``); parameters matching no prefix join the last
(deepest) group. LRs are spread geometrically from ``lr_low`` (first group) to ``lr_high``
(last), fastai's ``slice(lo, hi)``, or set as ``lr_high * decay ** (groups after it)``.
Norm weights and biases can be put in twin groups without weight decay.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

DEFAULT_GROUPS = (
    ("stem", ("backbone.conv1.", "backbone.bn1.")),
    ("layer1", ("backbone.layer1.",)),
    ("layer2", ("backbone.layer2.",)),
    ("layer3", ("backbone.layer3.",)),
    ("layer4", ("backbone.layer4.",)),
    ("neck", ("neck.",)),
    ("rpn", ("rpn.",)),
    ("heads", ("roi_heads.",)),
)
_NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.BatchNorm1d)


def group_lrs(
    n: int, lr_low: float, lr_high: float, mode: str = "slice", decay: float = 0.5
) -> list[float]:
    """LRs for ``n`` groups, shallowest first."""
    if mode == "slice":
        if n == 1:
            return [lr_high]
        ratio = (lr_high / lr_low) ** (1 / (n - 1))
        return [lr_low * ratio**i for i in range(n)]
    if mode == "decay":
        return [lr_high * decay ** (n - 1 - i) for i in range(n)]
    raise ValueError(f"optim.param_groups.mode must be 'slice' or 'decay', got {mode!r}")


def discriminative_groups(
    model: nn.Module,
    lr_low: float = 1e-4,
    lr_high: float = 1e-2,
    mode: str = "slice",
    decay: float = 0.5,
    no_weight_decay_norm_bias: bool = False,
    groups: Sequence[Sequence] | None = None,
) -> list[dict]:
    """Optimizer parameter groups (trainable parameters only), each with ``lr`` and
    ``name``; groups with no trainable parameters are left out but keep their place in
    the LR spread."""
    if lr_low <= 0 or lr_high <= 0:
        raise ValueError(
            f"optim.param_groups: lr_low and lr_high must be > 0, got {lr_low}, {lr_high}"
        )
    spec = [(str(name), tuple(prefixes)) for name, prefixes in (groups or DEFAULT_GROUPS)]
    lrs = group_lrs(len(spec), lr_low, lr_high, mode, decay)
    no_decay = set()
    if no_weight_decay_norm_bias:
        for mname, module in model.named_modules():
            for pname, _ in module.named_parameters(recurse=False):
                if isinstance(module, _NORMS) or pname == "bias":
                    no_decay.add(f"{mname}.{pname}" if mname else pname)
    buckets: dict[tuple[int, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        index = next(
            (i for i, (_, prefixes) in enumerate(spec) if name.startswith(prefixes)), len(spec) - 1
        )
        buckets.setdefault((index, name in no_decay), []).append(param)
    out = []
    for (index, is_no_decay), params in sorted(buckets.items()):
        group = {
            "params": params,
            "lr": lrs[index],
            "name": spec[index][0] + ("/no_decay" if is_no_decay else ""),
        }
        if is_no_decay:
            group["weight_decay"] = 0.0
        out.append(group)
    return out
