"""JSON Schema fragments (draft-07) from a ``_target_``'s signature: each parameter's type
(from its annotation), default and docstring text (the ``Args:`` section).

Annotations map where a YAML value can have the type: ``int`` -> integer, ``float`` -> number,
``bool``, ``str``, ``None`` -> null, sequences -> array, mappings -> object, ``Literal`` and
``Enum`` -> enum, dataclasses -> a closed object of their fields. Other classes (an
``nn.Module``, a callable) come from a nested ``_target_`` node or an interpolation, so they
are not constrained. Every typed value may also be an interpolation (``${...}``) or ``???``.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import os
import re
import types
import typing
from collections import abc
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import get_method

# a value Hydra fills in later: an interpolation or a mandatory '???'
INTERPOLATION = {"type": "string", "pattern": r"^\?\?\?$|\$\{", "description": "an interpolation"}
INTERPOLATION_REF = {"$ref": "#/definitions/interpolation"}
ANY: dict = {}


@dataclasses.dataclass
class TargetSchema:
    """What a target's signature says about the config keys of its node."""

    target: str
    properties: dict[str, dict]
    open: bool  # the signature takes **kwargs: any key is accepted
    description: str


def _union(schemas: list[dict]) -> dict:
    flat = [m for s in schemas for m in (s["anyOf"] if list(s) == ["anyOf"] else [s])]
    unique = {json.dumps(s, sort_keys=True): s for s in flat}
    if not unique or any(not s for s in unique.values()):
        return ANY
    return next(iter(unique.values())) if len(unique) == 1 else {"anyOf": list(unique.values())}


def _is_sequence(base: Any) -> bool:
    return base in (list, tuple, set, frozenset) or base in (Sequence, typing.Sequence)


def annotation_schema(annotation: Any) -> dict:
    """The JSON Schema of the values a YAML config may give an annotated parameter;
    ``{}`` (anything) where the annotation does not say."""
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return ANY
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        # a class member (Module, Callable, Tensor) comes from a _target_ node; beside a
        # YAML type (``float | Tensor``) it is left out, as visdet.config.validate does
        args = typing.get_args(annotation)
        plain = [annotation_schema(arg) for arg in args]
        members = [m or _class_member(a) for m, a in zip(plain, args, strict=True)]
        if not all(members):  # Any, or a member that does not say: anything goes
            return ANY
        if any(m and m != {"type": "null"} for m in plain):
            members = [m for m in plain if m]
        return _union(members)
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    if annotation is type(None):
        return {"type": "null"}
    if isinstance(annotation, type) and issubclass(annotation, os.PathLike):
        return {"type": "string"}
    simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if annotation in simple:
        return {"type": simple[annotation]}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [m.name for m in annotation]}
    base = origin or annotation
    if _is_sequence(base):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        items = annotation_schema(args[0]) if len(args) == 1 else ANY
        return {"type": "array", **({"items": with_interpolation(items)} if items else {})}
    if base in (dict, Mapping, typing.Mapping) or (
        isinstance(base, type) and issubclass(base, Mapping)
    ):
        return {"type": "object"}
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return dataclass_schema(annotation)
    return ANY


def _class_member(arg: Any) -> dict:
    if isinstance(arg, type) and issubclass(arg, (os.PathLike, str)):
        return {"type": "string"}
    is_class = isinstance(arg, type) or typing.get_origin(arg) in (abc.Callable, abc.Iterable)
    return {"type": "object"} if is_class else ANY


def with_interpolation(schema: dict) -> dict:
    """``schema``, or an interpolation string in its place."""
    if not schema or schema.get("type") == "string" and "enum" not in schema:
        return schema
    if list(schema) == ["anyOf"]:
        return {"anyOf": [*schema["anyOf"], INTERPOLATION_REF]}
    return {"anyOf": [schema, INTERPOLATION_REF]}


def dataclass_schema(cls: type) -> dict:
    """A closed object of a dataclass's fields (Hydra's own structured configs)."""
    hints = _type_hints(cls)
    properties = {}
    for field in dataclasses.fields(cls):
        prop = with_interpolation(annotation_schema(hints.get(field.name, field.type)))
        default = field.default
        if default is not dataclasses.MISSING and _is_json(default):
            prop = {**prop, "default": default}
        properties[field.name] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _is_json(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str, type(None))) or (
        isinstance(value, (list, tuple)) and all(_is_json(v) for v in value)
    )


def _type_hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except (NameError, TypeError, AttributeError):  # an unresolvable name: not type-checked
        return {}


_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def docstring_args(doc: str | None) -> dict[str, str]:
    """``name -> text`` from a Google-style ``Args:`` section (torch's and visdet's style)."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    in_args, indent, name, item_depth = False, 0, None, 0
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:", "Keyword Args:", "Attributes:"):
            in_args, indent, name = True, len(line) - len(line.lstrip()), None
            continue
        if not in_args:
            continue
        depth = len(line) - len(line.lstrip())
        if stripped and depth <= indent:
            in_args = False  # the next section
            continue
        match = _ARG_LINE.match(stripped)
        if match and (name is None or depth <= item_depth):
            name, item_depth = match.group(1).lstrip("*"), depth
            out[name] = match.group(3)
        elif name and stripped:
            out[name] = f"{out[name]} {stripped}".strip()
    return out


def _summary(doc: str | None) -> str:
    return inspect.cleandoc(doc or "").split("\n\n")[0].replace("\n", " ").strip()


def _forwarded_to(fn: Any, kwargs_name: str) -> Any:
    """The callable that ``fn`` hands its ``**kwargs_name`` to (``return faster_rcnn(...,
    **settings)``), when its source says so plainly; else None."""
    code = fn.__init__ if inspect.isclass(fn) else fn
    try:
        source = inspect.getsource(code)
    except (OSError, TypeError):  # no source (a builtin, a C extension)
        return None
    pattern = rf"([A-Za-z_][\w.]*)\([^()]*\*\*{kwargs_name}\b"
    for match in re.finditer(pattern, source):  # the first is fn's own def line
        callee = getattr(code, "__globals__", {}).get(match.group(1))
        if callable(callee) and callee is not fn:
            return callee
    return None


def target_schema(target: str, skip: set[str] | frozenset[str] = frozenset()) -> TargetSchema:
    """The config keys of a ``_target_`` node (its parameters but ``skip``, which the code
    passes itself); raises ValueError naming the target when it cannot be imported."""
    try:
        fn = get_method(target)
    except Exception as e:  # noqa: BLE001 - hydra wraps every import error; re-raised briefly
        raise ValueError(f"_target_ {target!r}: cannot import it ({e})") from None
    return _callable_schema(fn, target, set(skip), depth=0)


def _callable_schema(fn: Any, target: str, skip: set[str], depth: int) -> TargetSchema:
    init = fn.__init__ if inspect.isclass(fn) else fn
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: any key
        return TargetSchema(target, {}, True, _summary(fn.__doc__))
    hints = _type_hints(init)
    docs = {**docstring_args(fn.__doc__), **docstring_args(getattr(init, "__doc__", None))}
    properties, is_open = {}, False
    for name, p in sig.parameters.items():
        callee = _forwarded_to(fn, name) if p.kind is p.VAR_KEYWORD and depth < 3 else None
        if callee is not None:  # **settings handed on: the callee's keys
            inner = _callable_schema(callee, target, skip | set(sig.parameters), depth + 1)
            properties.update(inner.properties)
            is_open = is_open or inner.open
        elif p.kind is p.VAR_KEYWORD:
            is_open = True
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in ("self", *skip):
            continue
        prop = dict(with_interpolation(annotation_schema(hints.get(name, p.annotation))))
        text = docs.get(name, "")
        if p.default is not p.empty and _is_json(p.default):
            prop["default"] = list(p.default) if isinstance(p.default, tuple) else p.default
            if "default" not in text.lower():
                text = f"{text} (default: {json.dumps(prop['default'])})".strip()
        if text:
            prop["description"] = text
        properties[name] = prop
    return TargetSchema(target, properties, is_open, _summary(fn.__doc__))
