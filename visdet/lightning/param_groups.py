"""Discriminative learning rates: parameter groups by depth, each with its own LR.

Layers are grouped by name prefix, shallowest first. The groups come from the model itself
(``model.param_groups()``): a detector gives its backbone's groups (the backbone contract; for
ResNet: stem, layer1..4) followed by its family's (Faster R-CNN: neck, rpn, heads); an encoder
gives its backbone's. A trainable parameter that no group matches is an error naming it. LRs
are spread geometrically from ``lr_low`` (first group) to ``lr_high`` (last), fastai's
``slice(lo, hi)``, or set as ``lr_high * decay ** (groups after it)``. Norm weights and biases
can be put in twin groups without weight decay.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

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
    the LR spread. ``groups`` (``[(name, (prefix, ...)), ...]``) defaults to
    ``model.param_groups()``."""
    if lr_low <= 0 or lr_high <= 0:
        raise ValueError(
            f"optim.param_groups: lr_low and lr_high must be > 0, got {lr_low}, {lr_high}"
        )
    if groups is None:
        if not hasattr(model, "param_groups"):
            raise TypeError(
                f"optim.param_groups: {type(model).__name__} has no param_groups(); "
                "pass groups=[[name, [prefix, ...]], ...]"
            )
        groups = model.param_groups()
    spec = [(str(name), tuple(prefixes)) for name, prefixes in groups]
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
        index = next((i for i, (_, prefixes) in enumerate(spec) if name.startswith(prefixes)), None)
        if index is None:
            raise ValueError(
                f"optim.param_groups: parameter {name!r} matches no layer group "
                f"({', '.join(n for n, _ in spec)}); add its prefix to a group"
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
