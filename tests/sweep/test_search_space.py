"""The Optuna search space: Hydra override syntax and mappings -> distributions, conditional
keys, and clear errors for impossible ranges."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from visdet.sweep.search_space import build_search_space, override_value, sample

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distributions(params=None, search_space=None, arguments=()):
    space, fixed = build_search_space(params, search_space, arguments)
    return {p.name: p.distribution for p in space}, fixed


def test_override_syntax_gives_optuna_distributions():
    d, fixed = distributions(
        {
            "a": "interval(0.1, 0.5)",
            "b": "tag(log, interval(1e-5, 1e-2))",
            "c": "tag(int, interval(1, 8))",
            "d": "range(2, 10, step=4)",
            "e": "choice(default, strong)",
            "f": "tag(int, log, interval(1, 64))",
        }
    )
    assert d["a"] == FloatDistribution(0.1, 0.5)
    assert d["b"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert d["c"] == IntDistribution(1, 8)
    # range() excludes its stop like Python's: 2, 6 (10 is out)
    assert d["d"] == IntDistribution(2, 6, step=4)
    assert d["e"] == CategoricalDistribution(["default", "strong"])
    assert d["f"] == IntDistribution(1, 64, log=True)
    assert fixed == {}


def test_the_command_line_replaces_adds_and_fixes_keys():
    d, fixed = distributions(
        {"a": "interval(0.1, 0.5)", "b": "choice(x, y)"},
        arguments=["a=interval(0.2, 0.3)", "b=x", "+c=choice(1, 2)"],
    )
    assert d == {"a": FloatDistribution(0.2, 0.3), "c": CategoricalDistribution([1, 2])}
    assert fixed == {"b": "x"}
    space, fixed = build_search_space({"a": "interval(0.1, 0.5)"}, None, ["+c=choice(1, 2)"])
    study = optuna.create_study()
    # a key added with + keeps its + in the trial's overrides
    assert set(sample(study.ask(), space, fixed)) == {"a", "+c"}


def test_mappings_and_conditions_sample_only_active_keys():
    space, fixed = build_search_space(
        {"optim": "choice(sgd, adamw)"},
        {
            "optim.momentum": {"type": "float", "low": 0.8, "high": 0.95, "when": {"optim": "sgd"}},
            "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "model.depth": {"type": "categorical", "choices": [18, 50]},
        },
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        values = sample(trial, space, fixed)
        assert ("optim.momentum" in values) == (values["optim"] == "sgd")
        assert 1e-4 <= values["optim.lr"] <= 1e-1 and values["model.depth"] in (18, 50)
        if "optim.momentum" in values:
            assert 0.8 <= values["optim.momentum"] <= 0.95
        seen.add(values["optim"])
        study.tell(trial, 0.0)
    assert seen == {"sgd", "adamw"}
    # a fixed value counts for conditions too
    space, fixed = build_search_space(
        None,
        {"m": {"type": "float", "low": 0, "high": 1, "when": {"optim": ["sgd", "nesterov"]}}},
        ["optim=adamw"],
    )
    assert sample(study.ask(), space, fixed) == {}


@pytest.mark.parametrize(
    ("params", "search_space", "message"),
    [
        ({"a": "interval(0.5, 0.1)"}, None, "search space a: low 0.5 is above high 0.1"),
        ({"a": "tag(log, interval(0, 1))"}, None, "search space a: log scale needs low > 0"),
        (None, {"b": {"type": "float", "low": -1.0, "high": 1.0, "log": True}}, "log scale"),
        (None, {"b": {"type": "floaty", "low": 0, "high": 1}}, "type must be one of"),
        (None, {"b": {"type": "int", "low": 0}}, "search space b: low and high are required"),
        (None, {"b": {"type": "categorical", "choices": []}}, "non-empty choices"),
        (None, {"b": {"type": "int", "low": 0, "high": 4, "stpe": 2}}, "unknown settings"),
        (None, {"b": {"type": "int", "low": 0, "high": 4, "when": {"zz": 1}}}, "names 'zz'"),
        ({"a": "range(5, 1)"}, None, "is empty"),
    ],
)
def test_impossible_search_spaces_are_refused_naming_the_key(params, search_space, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_search_space(params, search_space)


def test_sampled_values_become_exact_overrides():
    assert override_value(0.1 + 0.2) == "0.30000000000000004"
    assert override_value(4) == "4" and override_value(True) == "true"
    assert override_value("strong") == "strong"
    assert override_value("a b'c") == "'a b\\'c'"
    assert override_value("1x") == "'1x'"
