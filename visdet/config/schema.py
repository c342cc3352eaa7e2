"""JSON Schemas (draft-07) of the config groups in conf/ and of experiment files, for editors
(yaml-language-server) and for ``visdet config schema --check``.

A node's keys come from its ``_target_``'s signature (visdet.config.signature_schema), or,
for a node without a target (``paths``, ``slurm``, ``aug.mosaic``), from the keys the group
files use. Both are closed (``additionalProperties: false``, so a misspelt key is flagged)
unless the target takes ``**kwargs``, the node is a collection of named ``_target_`` nodes
(``callbacks``, ``logger``: add your own) or it lies under ``hydra``. The schema is derived
from the group files and train.yaml, never from the experiment files it checks.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from visdet.config.signature_schema import (
    ANY,
    INTERPOLATION,
    INTERPOLATION_REF,
    _union,
    target_schema,
    with_interpolation,
)
from visdet.config.validate import EXTRA_KEYS, INJECTED, TOP_LEVEL
from visdet.config.yaml_comments import yaml_comments

DRAFT = "http://json-schema.org/draft-07/schema#"
PRIMARY = "train"  # the app whose global package experiment files extend
_PACKAGE = re.compile(r"^\s*#\s*@package\s+(\S+)")
HYDRA_KEYS = {
    "_target_": {"type": "string", "description": "the class or function this node builds"},
    "_partial_": {"type": "boolean", "description": "build a functools.partial"},
    "_recursive_": {"type": "boolean", "description": "instantiate nested nodes first"},
    "_convert_": {"enum": ["none", "partial", "object", "all"]},
    "_args_": {"type": "array", "description": "positional arguments"},
}


@dataclasses.dataclass
class Observed:
    """What the group files put at each config path: their values and their comments."""

    values: dict[tuple, list] = dataclasses.field(default_factory=lambda: defaultdict(list))
    children: dict[tuple, set] = dataclasses.field(default_factory=lambda: defaultdict(set))
    comments: dict[tuple, str] = dataclasses.field(default_factory=dict)

    def add(self, path: tuple, value: Any) -> None:
        self.values[path].append(value)
        if path:  # a nested group's file (optim/param_groups) is a key of its parent
            self.children[path[:-1]].add(path[-1])
        if isinstance(value, dict):
            for key, sub in value.items():
                if key != "defaults":
                    self.add((*path, str(key)), sub)


def package_of(path: Path, group: str) -> tuple[str, ...]:
    """Where a group file's content lands: its ``# @package`` header or its group."""
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        match = _PACKAGE.match(line)
        if not line.lstrip().startswith("#"):
            break
        if match:
            package = match.group(1).replace("_group_", group.replace("/", "."))
            parts = package.split(".")
            return tuple(parts[1:] if parts[0] == "_global_" else parts)
    return tuple(group.split("/")) if group else ()


def observe(conf: Path) -> Observed:
    """Every group file of ``conf`` but experiment/ (what the schema checks), and train.yaml."""
    seen = Observed()
    files = [conf / f"{PRIMARY}.yaml"]
    files += sorted(p for p in conf.rglob("*.yaml") if p.parent != conf)
    for path in files:
        group = path.parent.relative_to(conf).as_posix() if path.parent != conf else ""
        if group.split("/")[0] == "experiment":
            continue
        package = package_of(path, group)
        text = path.read_text()
        content = OmegaConf.to_container(OmegaConf.create(text), resolve=False) or {}
        seen.add(package, content)
        for key, comment in yaml_comments(text).items():
            seen.comments.setdefault((*package, *key.split(".")), comment)
    return seen


def _scalar_schema(values: list) -> dict:
    kinds = {"boolean" if isinstance(v, bool) else type(v).__name__ for v in values}
    names = {"int": "integer", "float": "number", "str": "string", "list": "array"}
    types_ = sorted({names.get(k, k) for k in kinds if k != "NoneType"})
    if not types_:
        return ANY
    if "number" in types_ and "integer" in types_:
        types_.remove("integer")
    if "NoneType" in kinds:
        types_.append("null")
    return with_interpolation({"type": types_[0] if len(types_) == 1 else types_})


class SchemaBuilder:
    def __init__(self, seen: Observed) -> None:
        self.seen = seen
        self.warnings: list[str] = []
        self.cache: dict[tuple, dict] = {}

    def node(self, path: tuple) -> dict:
        """The schema of the mapping at ``path`` (over every group file's value there)."""
        if path not in self.cache:
            self.cache[path] = self._node(path)
        return self.cache[path]

    def _node(self, path: tuple) -> dict:
        strict = path[:1] != ("hydra",)  # Hydra's own node is only loosely checked
        dicts = [v for v in self.seen.values.get(path, []) if isinstance(v, dict)]
        dotted = ".".join(path)
        targets = sorted({d["_target_"] for d in dicts if isinstance(d.get("_target_"), str)})
        sigs = []
        for target in targets:
            try:
                sigs.append(target_schema(target, INJECTED.get(dotted, set())))
            except ValueError as e:
                self.warnings.append(f"{dotted}: {e}; its keys are not checked")
        yaml_keys = set(self.seen.children.get(path, ()))
        extra: set[str] = set()
        if sigs:
            extra = {k for k in yaml_keys if k.startswith("_") or k in EXTRA_KEYS.get(dotted, ())}
            keys = [k for s in sigs for k in s.properties] + sorted(extra)
            closed = not any(s.open for s in sigs) and len(sigs) == len(targets)
        else:
            keys, closed = sorted(yaml_keys), strict
        props: dict[str, dict] = {"defaults": {"$ref": "#/definitions/defaults"}}
        for key in dict.fromkeys(keys):
            sig_props = [s.properties[key] for s in sigs if key in s.properties]
            props[key] = self.prop((*path, key), sig_props)
        out: dict = {"type": "object"}
        if any("_target_" in d for d in dicts):
            props = {**HYDRA_KEYS, **props}
            lines = [f"{s.target}: {s.description}" if s.description else s.target for s in sigs]
            props["_target_"] = {**props["_target_"], "examples": targets}
            out["description"] = "\n".join(lines)
        out["properties"] = props
        collection = dicts and all(
            isinstance(v, dict) and "_target_" in v
            for d in dicts
            for k, v in d.items()
            if k != "defaults"
        )
        if collection:  # named _target_ nodes (callbacks, loggers): more may be added
            out["additionalProperties"] = {"type": ["object", "null"]}
        elif closed:
            out["additionalProperties"] = False
            for sig in sigs if len(sigs) > 1 else []:  # each target's own keys
                allowed = sorted({*HYDRA_KEYS, "defaults", *sig.properties, *extra})
                when = {"properties": {"_target_": {"const": sig.target}}, "required": ["_target_"]}
                then = {"propertyNames": {"enum": allowed}}
                out.setdefault("allOf", []).append({"if": when, "then": then})
        return out

    def prop(self, path: tuple, sig_props: list[dict]) -> dict:
        values = self.seen.values.get(path, [])
        strip = ("description", "default")
        base = _union([{k: v for k, v in p.items() if k not in strip} for p in sig_props])
        if not sig_props:
            base = _scalar_schema([v for v in values if not isinstance(v, dict)])
        if any(isinstance(v, dict) for v in values):  # a mapping here: its keys, checked
            others = base["anyOf"] if list(base) == ["anyOf"] else [base] if base else []
            others = [o for o in others if o not in ({"type": "object"}, INTERPOLATION_REF)]
            if None in values and {"type": "null"} not in others:
                others.append({"type": "null"})
            base = {"anyOf": [self.node(path), *others, INTERPOLATION_REF]}
        first = sig_props[0] if sig_props else {}
        texts = [first.get("description"), self.seen.comments.get(path)]
        text = " ".join(t for t in texts if t)
        extra = {"default": first["default"]} if "default" in first else {}
        return {**base, **({"description": text} if text else {}), **extra}


def defaults_schema(groups: dict[str, list[str]]) -> dict:
    """A defaults list: ``_self_``, ``group/option`` strings and ``[override |optional ]
    /group[@package]: option`` entries whose options are the group's."""
    names: dict[str, set[str]] = defaultdict(set)  # /group, or relative to a file's group
    for group, options in groups.items():
        parts = group.split("/")
        names[f"/?{re.escape(group)}"].update(options)
        for i in range(1, len(parts)):
            names[re.escape("/".join(parts[i:]))].update(options)
    patterns = {}
    for name, options in sorted(names.items()):
        option = {"enum": [*sorted(options), None]}
        key = rf"^((override|optional)\s+)*{name}(@[\w.]+)?$"
        patterns[key] = {"anyOf": [option, {"type": "array", "items": option}]}
    entry = {
        "type": "object",
        "patternProperties": patterns,
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
    }
    string = {"type": "string", "pattern": r"^[\w./@-]+$"}
    return {"type": "array", "items": {"anyOf": [string, entry]}}


def _document(title: str, body: dict, groups: dict[str, list[str]]) -> dict:
    definitions = {"interpolation": INTERPOLATION, "defaults": defaults_schema(groups)}
    return {"$schema": DRAFT, "title": title, **body, "definitions": definitions}


def build_schemas(conf: Path, groups: dict[str, list[str]]) -> tuple[dict[str, dict], list[str]]:
    """``{name: schema}`` for every top-level group of ``conf`` and ``experiment``, and the
    warnings (targets that could not be imported). ``groups``: group -> option names
    (Hydra's view, hydra/* groups included)."""
    builder = SchemaBuilder(observe(conf))
    out = {}
    top = sorted({g.split("/")[0] for g in groups} & {p[0] for p in builder.seen.values if p})
    for group in top:
        schema = dict(builder.node((group,)))
        options = ", ".join(groups.get(group, []))
        schema["description"] = f"config group {group} (options: {options}). " + schema.get(
            "description", ""
        )
        out[group] = _document(f"visdet config group '{group}'", schema, groups)
    root = builder.node(())
    allowed = sorted(set(TOP_LEVEL) | set(builder.seen.values[()][0]))  # train.yaml's keys
    props = {k: root["properties"].get(k, ANY) for k in allowed}
    for group in top:
        if group in props:
            props[group] = {"anyOf": [builder.node((group,)), {"type": "null"}]}
    props["defaults"] = {"$ref": "#/definitions/defaults"}
    body = {
        "description": "a visdet experiment (# @package _global_): top-level keys of "
        f"{PRIMARY}.yaml; 'override /group: option' in its defaults list",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
    }
    out["experiment"] = _document("visdet experiment file", body, groups)
    return out, builder.warnings


def schema_json(schema: dict) -> str:
    return json.dumps(schema, indent=2) + "\n"


def config_dir(module: str = "visdet.conf") -> Path:
    """The folder of a config package (visdet.conf: the repository's conf/)."""
    return Path(str(importlib.resources.files(module)))


def hydra_groups(module: str = "visdet.conf") -> dict[str, list[str]]:
    """Every config group Hydra sees from ``module`` (hydra/* and plugins included) and
    its option names."""
    out: dict[str, list[str]] = {}
    with initialize_config_module(module, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()

        def walk(parent: str) -> None:
            for name in loader.list_groups(parent):
                group = f"{parent}/{name}" if parent else name
                out[group] = loader.get_group_options(group)
                walk(group)

        walk("")
    return out
