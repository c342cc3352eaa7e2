"""Check a composed config before any work starts.

Every node with a ``_target_`` is checked against the target's signature: unknown keys,
missing required arguments, ``???`` values and wrong simple types (int, float, bool, str,
sequences) stop with one short message naming the key and the allowed options. The
top-level keys are checked against ``TOP_LEVEL``.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from hydra.utils import get_method
from omegaconf import DictConfig, ListConfig, OmegaConf

TOP_LEVEL = {
    "data",
    "model",
    "backbone",
    "neck",
    "aug",
    "optim",
    "sched",
    "trainer",
    "callbacks",
    "logger",
    "paths",
    "seed",
    "task_name",
    "optimized_metric",
    "ckpt_path",
    "trust_pickled_checkpoint",
    "resume_if_exists",
    "slurm",
    "test",
    "analysis",
    "tags",
    "experiment",
    "debug",
    "hparams_search",
    "hydra",
}


# arguments that visdet.runs passes at instantiation time, so the config must not set them
INJECTED = {
    "model": {"optimizer", "scheduler", "augment", "param_groups", "encoder", "num_classes"},
    "trainer": {"callbacks", "logger"},
}
# a value interpolated from this null is filled in from the data before instantiation
# (visdet.runs.train_detector.build_module), so it is not type-checked as null
FROM_DATA = "${data.num_classes}"
# keys a node may carry beside its target's arguments (visdet.runs takes them out first)
EXTRA_KEYS = {"optim": {"param_groups"}}


class ConfigError(ValueError):
    """A config key is unknown, missing or of the wrong type."""


def _allowed(annotation: Any) -> tuple[type, ...] | None:
    """Python types a config value may have for an annotation; None = not checked."""
    if isinstance(annotation, str) or annotation is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        # a config value is a YAML scalar, list or mapping: union members that are other
        # classes (e.g. ``float | Tensor`` for an optimizer's lr) cannot come from YAML, so
        # they do not widen what is accepted; an unresolvable member (Any, a string) does
        out: tuple[type, ...] = ()
        for arg in typing.get_args(annotation):
            sub = _allowed(arg)
            if sub is None and not (isinstance(arg, type) and typing.get_origin(arg) is None):
                return None
            out += sub or ()
        return out or None
    if annotation is type(None):
        return (type(None),)
    if annotation is bool:
        return (bool,)
    if annotation is int:
        return (int,)
    if annotation is float:
        return (int, float)
    if annotation is str:
        return (str,)
    base = origin or annotation
    if base in (list, tuple, typing.Sequence) or (
        isinstance(base, type)
        and base.__module__ == "collections.abc"
        and base.__name__ == "Sequence"
    ):
        return (list, tuple, ListConfig)
    if base is dict:
        return (dict, DictConfig)
    return None


def _check_node(node: DictConfig, path: str) -> None:
    target = node.get("_target_")
    try:
        fn = get_method(target)
    except Exception as e:  # noqa: BLE001 - re-raised with the key named
        raise ConfigError(f"{path}._target_: cannot import {target!r} ({e})") from None
    sig = inspect.signature(fn)
    params = {n: p for n, p in sig.parameters.items() if n not in ("self", "args", "kwargs")}
    has_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations are simply not type-checked
        hints = {}
    keys = [k for k in node if not str(k).startswith("_")]
    for key in keys:
        if key not in params and not has_kwargs and key not in EXTRA_KEYS.get(path, ()):
            raise ConfigError(
                f"{path}.{key}: unknown key for {target}; allowed: {', '.join(params) or '(none)'}"
            )
    partial = bool(node.get("_partial_", False))
    for name, p in params.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name not in keys:
            if p.default is p.empty and not partial and name not in INJECTED.get(path, ()):
                raise ConfigError(f"{path}.{name}: missing value (required by {target})")
            continue
        if OmegaConf.is_missing(node, name):
            raise ConfigError(
                f"{path}.{name}: missing value ('???'); set it on the command "
                f"line, e.g. {path}.{name}=..."
            )
        value = node[name]
        if isinstance(value, DictConfig) and "_target_" in value:
            continue
        if value is None and OmegaConf.to_container(node, resolve=False)[name] == FROM_DATA:
            continue
        allowed = _allowed(hints.get(name, p.annotation))
        if allowed is None or value is None and type(None) in allowed:
            continue
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            names = sorted({a.__name__ for a in allowed} - {"ListConfig", "DictConfig"})
            raise ConfigError(
                f"{path}.{name}: expected {' or '.join(names)}, got "
                f"{type(value).__name__} {value!r}"
            )


def _walk(node: Any, path: str) -> None:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            _check_node(node, path)
        for key in node:
            if str(key).startswith("_") or OmegaConf.is_missing(node, key):
                continue
            _walk(node[key], f"{path}.{key}" if path else str(key))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _walk(item, f"{path}[{i}]")


TRAIN_GROUPS = ("data", "model", "aug", "optim", "trainer")


def validate_config(
    cfg: DictConfig,
    top_level: set[str] | frozenset[str] = frozenset(TOP_LEVEL),
    required: tuple[str, ...] = TRAIN_GROUPS,
) -> None:
    """Raise ConfigError naming the first bad key of ``cfg``.

    ``top_level`` and ``required`` default to the training config's; other entry points
    (export, encoder fine-tuning, feature extraction) pass their own.
    """
    unknown = sorted(set(cfg.keys()) - set(top_level))
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown top-level key; allowed: {', '.join(sorted(top_level))}"
        )
    for group in required:
        if group not in cfg or cfg[group] is None:
            raise ConfigError(f"{group}: missing config group; pick one, e.g. {group}=...")
    for key in cfg:
        if key == "hydra":
            continue
        try:
            if isinstance(cfg[key], (DictConfig, ListConfig)):
                OmegaConf.to_container(cfg[key], resolve=True, throw_on_missing=False)
        except Exception as e:  # noqa: BLE001 - interpolation errors, re-raised briefly
            raise ConfigError(f"{key}: cannot resolve an interpolation ({e})") from None
        _walk(cfg[key], str(key))
    _check_training_length(cfg)


def _check_training_length(cfg: DictConfig) -> None:
    """A run that would train nothing (``trainer.max_epochs=0`` or ``max_steps=0``) is an
    error, not an exit 0 with mAP=nan."""
    trainer = cfg.get("trainer")
    if not isinstance(trainer, DictConfig):
        return
    for key in ("max_epochs", "max_steps"):
        if trainer.get(key) == 0:
            raise ConfigError(f"trainer.{key}: 0 trains nothing; set it >= 1 (or -1 for no limit)")
