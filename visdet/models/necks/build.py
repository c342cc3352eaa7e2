"""Build a neck for a backbone: the neck names the stages it reads (``in_features``), the
backbone's contract supplies their channels."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from torch import nn

from visdet.models.backbones.base import Backbone


def _argument(factory: Callable, name: str):
    """The value ``factory`` (a class, function or functools.partial) gives ``name``."""
    if isinstance(factory, functools.partial) and name in factory.keywords:
        return factory.keywords[name]
    target = factory.func if isinstance(factory, functools.partial) else factory
    parameter = inspect.signature(target).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise TypeError(f"neck {getattr(target, '__name__', target)} has no default '{name}'")
    return parameter.default


def neck_for(backbone: Backbone, neck: Callable[..., nn.Module]) -> nn.Module:
    """``neck(in_channels=...)`` with the channels of the backbone stages the neck reads.

    ``neck`` is a partial (``_partial_: true`` in conf/neck) or a class whose
    ``in_features`` names backbone stages; a stage the backbone does not return is a
    ValueError naming both."""
    if not isinstance(backbone, Backbone):
        raise TypeError(
            "backbone must implement visdet.models.backbones.Backbone, got "
            f"{type(backbone).__name__}"
        )
    if isinstance(neck, nn.Module):
        raise TypeError(
            "neck must be a partial (conf/neck: _partial_: true) or a class, not a module"
        )
    target = neck.func if isinstance(neck, functools.partial) else neck
    in_features = tuple(_argument(neck, "in_features"))
    backbone.check_stages(in_features, f"neck {getattr(target, '__name__', target)}")
    return neck(in_channels=[backbone.out_channels[s] for s in in_features])
