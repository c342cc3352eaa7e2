"""Where each value of a composed config comes from: a group file, the experiment, train.yaml
or a command-line override (``visdet config show``).

Hydra does not record it, so the composition is replayed: Hydra's defaults list gives the
files in the order it merges them; each file's keys are written, at its package, over the
keys before it (a mapping merges key by key, anything else replaces the whole node); the
command line's key overrides come last. The printed config is Hydra's own composition.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import visdet.config  # noqa: F401 - registers the resolvers the configs use

Path_ = tuple[str, ...]


@dataclasses.dataclass
class Composed:
    config: DictConfig  # Hydra's composition (without the hydra node)
    sources: dict[Path_, str]  # config path -> the source that set it last
    merged: list[tuple[str, str, str]]  # (source, its package, a note) in merge order


def _record(sources: dict[Path_, str], path: Path_, value: Any, source: str) -> None:
    below = [k for k in sources if k[: len(path)] == path and len(k) > len(path)]
    if isinstance(value, dict):  # a mapping merges, key by key, into a mapping
        if not below:
            sources[path] = source
        for key, sub in value.items():
            _record(sources, (*path, str(key)), sub, source)
        return
    for key in below:  # a scalar, list or null replaces the whole node
        del sources[key]
    sources[path] = source


def _command_line_groups(overrides: list[str]) -> set[tuple[str, str]]:
    out = set()
    for override in OverridesParser.create().parse_overrides(overrides):
        value = override.value()
        if isinstance(value, str):
            out.add((override.key_or_group.split("@")[0], value))
    return out


def compose_with_sources(
    config_name: str = "train", overrides: list[str] | tuple = (), module: str = "visdet.conf"
) -> Composed:
    """Compose ``config_name`` of ``module`` with ``overrides`` and attribute every key.
    Raises Hydra's errors (unknown group option, unknown key) as Hydra does."""
    overrides = list(overrides)
    with initialize_config_module(module, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides)
        loader = GlobalHydra.instance().config_loader()
        defaults = loader.compute_defaults_list(config_name, overrides, RunMode.RUN)
        # the repository with the search path the overrides give (hydra.searchpath=...)
        _, repo = loader._parse_overrides_and_create_caching_repo(config_name, overrides)
        from_command_line = _command_line_groups(overrides)
        sources: dict[Path_, str] = {}
        merged = []
        for entry in defaults.defaults:
            package = entry.package or ""
            if entry.config_path is None or package.split(".")[0] == "hydra":
                continue
            loaded = repo.load_config(entry.config_path)
            content = OmegaConf.to_container(loaded.config, resolve=False) or {}
            content.pop("defaults", None)
            source = f"{entry.config_path}.yaml"
            group, _, option = entry.config_path.rpartition("/")
            note = "primary config" if entry.primary else f"at {package or '_global_'}"
            if (group, option) in from_command_line:
                note += f" (command line {group}={option})"
            path = tuple(package.split(".")) if package else ()
            _record(sources, path, content, source)
            merged.append((source, package, note))
        for override in defaults.config_overrides:
            if override.key_or_group.split(".")[0] == "hydra":
                continue  # the hydra node is not part of the composed config
            path = tuple(override.key_or_group.split("."))
            source = f"override {override.input_line}"
            if override.is_delete():
                for key in [k for k in sources if k[: len(path)] == path]:
                    del sources[key]
            else:
                _record(sources, path, override.value(), source)
            merged.append((source, override.key_or_group, "command line"))
    return Composed(cfg, sources, merged)


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _resolved(cfg: DictConfig, path: Path_) -> str:
    try:
        value = OmegaConf.select(cfg, ".".join(path), throw_on_missing=False)
    except OmegaConfBaseException as e:  # e.g. ${hydra:...}: only inside a run
        return f"resolved at run time ({str(e).splitlines()[0]})"
    if OmegaConf.is_config(value):
        return ""
    return f"= {_scalar(value)}"


def render(composed: Composed, select: str | None = None) -> str:
    """The composed config as an indented tree, each value followed by ``# <source>`` (and
    ``= <resolved value>`` for an interpolation)."""
    root: Path_ = tuple(select.split(".")) if select else ()
    data = OmegaConf.to_container(composed.config, resolve=False)
    for key in root:
        if not isinstance(data, dict) or key not in data:
            raise KeyError(f"{select}: no such key in the composed config")
        data = data[key]
    rows: list[tuple[str, str]] = []

    def walk(node: Any, path: Path_, depth: int) -> None:
        pad = "  " * depth
        for key, value in node.items():
            sub = (*path, str(key))
            if isinstance(value, dict) and value:
                rows.append((f"{pad}{key}:", ""))
                walk(value, sub, depth + 1)
                continue
            note = composed.sources.get(sub, "?")
            if isinstance(value, str) and "${" in value:
                resolved = _resolved(composed.config, sub)
                note = f"{note}  {resolved}" if resolved else note
            rows.append((f"{pad}{key}: {_scalar(value)}", note))

    if isinstance(data, dict):
        walk(data, root, 0)
    else:
        rows.append((f"{select}: {_scalar(data)}", composed.sources.get(root, "?")))
    width = min(max((len(left) for left, note in rows if note), default=0), 64)
    lines = ["# merged in this order (a later source wins):"]
    first = max((len(source) for source, _, _ in composed.merged), default=0)
    lines += [f"#   {source.ljust(first)}  {note}" for source, _, note in composed.merged]
    for left, note in rows:
        lines.append(f"{left.ljust(width)}  # {note}" if note else left)
    return "\n".join(lines) + "\n"
