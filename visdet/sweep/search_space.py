"""The search space of an Optuna sweep: what each trial samples and how.

Two ways to write it, usable together (``hydra.sweeper``):

- ``params``: Hydra override syntax, one key each (as the command line accepts too):
  ``interval(a, b)`` uniform float, ``tag(log, interval(a, b))`` log-uniform,
  ``tag(int, interval(a, b))`` (and ``tag(int, log, ...)``) integers,
  ``range(a, b, step=s)`` an integer (or float) grid without ``b``, ``choice(x, y)``
  categorical; a plain value fixes the key.
- ``search_space``: one mapping per key, for what the override syntax cannot say:
  ``{type: float|int|categorical, low, high, log, step, choices, when: {key: value or list}}``.
  ``when`` makes a key conditional: it is sampled (and passed to the trial) only when every
  named key took one of the given values in that trial, e.g. ``optim.momentum`` only with
  ``optim: sgd``.

Keys are sampled in the order written, ``search_space`` after ``params``; a condition may
only name keys sampled before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

TYPES = ("float", "int", "categorical")


@dataclass(frozen=True)
class SearchParam:
    """One searched key: its distribution and the condition under which it is sampled.
    ``name`` is the config key (the Optuna parameter), ``key`` the override's key (with a
    ``+`` that adds it to the config)."""

    name: str
    distribution: BaseDistribution
    when: dict[str, tuple] = field(default_factory=dict)
    key: str = ""

    @property
    def override_key(self) -> str:
        return self.key or self.name

    def active(self, sampled: Mapping[str, Any]) -> bool:
        return all(k in sampled and sampled[k] in values for k, values in self.when.items())


def float_or_int(name: str, low, high, log: bool, step, integer: bool) -> BaseDistribution:
    """A checked Int- or FloatDistribution; the error names the key and what is wrong."""
    if low is None or high is None:
        raise ValueError(f"search space {name}: low and high are required")
    if low > high:
        raise ValueError(f"search space {name}: low {low} is above high {high}")
    if log and low <= 0:
        raise ValueError(f"search space {name}: log scale needs low > 0, got low {low}")
    if log and step is not None:
        raise ValueError(f"search space {name}: log scale and step cannot be combined")
    if step is not None and step <= 0:
        raise ValueError(f"search space {name}: step must be > 0, got {step}")
    if integer:
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(float(low), float(high), log=log, step=step)


def from_override(override: Override) -> BaseDistribution | str:
    """The distribution of one sweep override (or its fixed value as a string)."""
    name = override.get_key_element()
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        assert isinstance(value, ChoiceSweep | RangeSweep)
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        if not choices:
            raise ValueError(f"search space {name}: choice() needs at least one value")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        integer = not any(isinstance(v, float) for v in (value.start, value.stop, value.step))
        # range() excludes its stop, Optuna's grid includes high: the last grid value below it
        n = math.ceil((value.stop - value.start) / value.step) - 1
        if value.step <= 0 or n < 0:
            raise ValueError(f"search space {name}: {override.input_line} is empty")
        high = value.start + n * value.step
        return float_or_int(name, value.start, high, False, value.step, integer)
    if isinstance(value, IntervalSweep):
        integer = "int" in value.tags
        return float_or_int(name, value.start, value.end, "log" in value.tags, None, integer)
    raise ValueError(f"search space {name}: {override.input_line} is not supported")


def from_mapping(name: str, spec: Mapping[str, Any]) -> SearchParam:
    """A ``search_space`` entry -> SearchParam (checked)."""
    spec = dict(spec)
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices", "when"}
    if unknown:
        raise ValueError(f"search space {name}: unknown settings {sorted(unknown)}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ValueError(f"search space {name}: type must be one of {TYPES}, got {kind!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, Sequence) or isinstance(choices, str) or not choices:
            raise ValueError(f"search space {name}: categorical needs a non-empty choices list")
        distribution: BaseDistribution = CategoricalDistribution(list(choices))
    else:
        low, high = spec.get("low"), spec.get("high")
        log = bool(spec.get("log", False))
        distribution = float_or_int(name, low, high, log, spec.get("step"), kind == "int")
    when = {}
    for key, values in dict(spec.get("when") or {}).items():
        many = isinstance(values, Sequence) and not isinstance(values, str)
        when[str(key)] = tuple(values) if many else (values,)
    return SearchParam(name, distribution, when)


def build_search_space(
    params: Mapping[str, Any] | None,
    search_space: Mapping[str, Mapping] | None,
    arguments: Sequence[str] = (),
) -> tuple[list[SearchParam], dict[str, str]]:
    """(searched keys in sampling order, fixed overrides) from ``hydra.sweeper.params``,
    ``hydra.sweeper.search_space`` and the command line's overrides. A command-line sweep
    expression replaces or adds a searched key; a plain value fixes a key (taking it out of
    the search)."""
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    searched: dict[str, SearchParam] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        name = key.lstrip("+")
        value = from_override(override)
        searched.pop(name, None)
        fixed = {k: v for k, v in fixed.items() if k.lstrip("+") != name}
        if isinstance(value, BaseDistribution):
            searched[name] = SearchParam(name, value, key=key)
        else:
            fixed[key] = value
    fixed_names = {k.lstrip("+") for k in fixed}
    for name, spec in (search_space or {}).items():
        name = str(name)
        if name.lstrip("+") in fixed_names:
            continue
        param = from_mapping(name.lstrip("+"), spec)
        searched[param.name] = SearchParam(param.name, param.distribution, param.when, name)
    order = list(searched)
    for i, param in enumerate(searched.values()):
        for key in param.when:
            if key not in order[:i] and key not in fixed_names:
                raise ValueError(
                    f"search space {param.name}: its condition names {key!r}, which is not "
                    "a key sampled before it (or fixed)"
                )
    return list(searched.values()), fixed


def sample(trial, space: Sequence[SearchParam], fixed: Mapping[str, str]) -> dict[str, Any]:
    """Sample ``trial``'s values of every active key: {override key: value} (fixed values
    count for conditions)."""
    known: dict[str, Any] = {k.lstrip("+"): v for k, v in fixed.items()}
    sampled = {}
    for param in space:
        if param.active(known):
            known[param.name] = suggest(trial, param.name, param.distribution)
            sampled[param.override_key] = known[param.name]
    return sampled


def suggest(trial, name: str, distribution: BaseDistribution) -> Any:
    """``trial.suggest_*`` for ``distribution``."""
    d = distribution
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(name, d.choices)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    assert isinstance(d, FloatDistribution)
    return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)


def override_value(value: Any) -> str:
    """A sampled value as override text: floats exact (repr), strings quoted when the
    override grammar needs it."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if text and all(c.isalnum() or c in "_-./:" for c in text) and not text[0].isdigit():
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
