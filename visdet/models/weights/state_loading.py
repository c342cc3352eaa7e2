"""Load a (converted) state dict into a module and say exactly what happened.

Shared by every weight-loading path (``model.init_from``, ``model.backbone.weights``,
``encoder.init_from``): tensors are compared by name and shape with the module's own;
a shape mismatch means another architecture and always stops with the first mismatching
keys and both shapes, except for layers named in ``reinit_prefixes`` (e.g. the
class-specific predictor when the number of classes changes), which keep their fresh
initialisation and are reported. Missing and unexpected keys stop the load when ``strict``
and are reported otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass
class LoadReport:
    source: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{self.source}: loaded {self.loaded} tensors; missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, re-initialised {len(self.reinitialised)}"
        ]
        for title, keys in (
            ("missing (kept their initial values)", self.missing),
            ("unexpected (ignored)", self.unexpected),
            ("re-initialised (shape differs: class count)", self.reinitialised),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (
                    f", ... ({len(keys)} in all)" if len(keys) > 8 else ""
                )
                lines.append(f"  {title}: {shown}")
        return "\n".join(lines)


def _never(key: str) -> bool:
    return False


def load_state(
    module: nn.Module,
    weights: dict[str, Tensor],
    source: str,
    strict: bool = True,
    reinit_prefixes: Iterable[str] = (),
    ignore_missing: Callable[[str], bool] = _never,
    ignore_unexpected: Callable[[str], bool] = _never,
    strict_key: str = "strict",
) -> LoadReport:
    """Copy ``weights`` into ``module``; ``source`` (e.g. ``"model.init_from: ckpt.pth"``)
    starts every message, ``strict_key`` is the setting a partial-match error points to.
    BatchNorm's ``num_batches_tracked`` counter is never required (FrozenBatchNorm has none)."""
    own = module.state_dict()
    reinit_prefixes = tuple(reinit_prefixes)
    report = LoadReport(source)
    mismatched, usable, reinit_keys = [], {}, set()
    for key, value in weights.items():
        if key not in own:
            if not (key.endswith("num_batches_tracked") or ignore_unexpected(key)):
                report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            if key.startswith(reinit_prefixes):
                reinit_keys.add(key)
                report.reinitialised.append(
                    f"{key} {list(own[key].shape)} (checkpoint {list(value.shape)})"
                )
            else:
                mismatched.append(
                    f"{key}: checkpoint {list(value.shape)}, model {list(own[key].shape)}"
                )
        else:
            usable[key] = value
    if mismatched:
        raise ValueError(
            f"{source} does not match this model ({len(mismatched)} tensors differ in shape; "
            f"another architecture?): " + "; ".join(mismatched[:5])
        )
    report.missing = [
        k
        for k in own
        if k not in usable
        and k not in reinit_keys
        and not k.endswith("num_batches_tracked")
        and not ignore_missing(k)
    ]
    if not usable:
        raise ValueError(
            f"{source}: no tensor matches this model; first keys of the file: "
            f"{list(weights)[:5]}, of the model: {list(own)[:5]}"
        )
    if strict and (report.missing or report.unexpected):
        raise ValueError(
            f"{source} is a partial match (missing {len(report.missing)}: "
            f"{report.missing[:5]}; unexpected {len(report.unexpected)}: "
            f"{report.unexpected[:5]}); set {strict_key}=false to load it anyway"
        )
    module.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report
