"""Read an MMDetection 2.x / 3.x Python config as data, never running it.

MMDetection configs are Python files of assignments (``model = dict(...)``) that inherit
through ``_base_`` (a path or a list of paths, relative to the file). MMCV / MMEngine run them;
this module parses them with :mod:`ast` and evaluates only literals and the few expressions
configs use:

- ``dict(...)``, ``{...}``, lists, tuples, numbers, strings, ``True``/``False``/``None``;
- names assigned earlier in the same file (``dataset_type``, ``train_pipeline``);
- ``_base_.x.y`` (MMEngine) and ``{{_base_.x.y}}`` (MMCV): a value of the merged bases;
- ``+ - * / //`` on numbers, strings and lists (``data_root + 'annotations/...'``), unary ``-``;
- ``_base_.a.b = value``: changes the bases' value before the file's own values merge in.

Anything else (a call other than ``dict``, an import, a loop, a function) is refused with the
file and line. Merge rules (MMEngine's): a file's dict merges key by key into its bases'
dict; ``_delete_=True`` in a dict replaces the base's dict instead; other values (lists too)
replace; two bases of one file may not define the same top-level key. ``mmdet::`` paths
(another package's configs) and the newer ``read_base()`` import form are not supported.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path
from typing import Any

BASE = "_base_"
DELETE = "_delete_"
_BASE_REF = re.compile(r"\{\{\s*(_base_(?:\.[A-Za-z_]\w*|\[\d+\])+)\s*\}\}")


class ConfigReadError(ValueError):
    """An MMDetection config that cannot be read: the message names the file and line."""


def load_config(path: str | Path) -> dict[str, Any]:
    """The merged config of the MMDetection file ``path`` (its ``_base_`` files first)."""
    return _load(Path(path).resolve(), ())


def _load(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise ConfigReadError(f"{path}: _base_ files include each other ({cycle})")
    if path.suffix != ".py":
        raise ConfigReadError(f"{path}: expected an MMDetection Python config (.py)")
    if not path.is_file():
        where = f" (a _base_ of {chain[-1]})" if chain else ""
        raise ConfigReadError(f"{path}: no such config file{where}")
    text = _BASE_REF.sub(lambda m: m.group(1), path.read_text(encoding="utf-8"))
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as e:
        raise ConfigReadError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    reader = _FileReader(path)
    base_paths = reader.base_paths(tree)
    base: dict[str, Any] = {}
    for base_path in base_paths:
        loaded = _load(base_path, (*chain, path))
        twice = sorted(set(base) & set(loaded))
        if twice:
            raise ConfigReadError(
                f"{path}: _base_ files define the same keys {twice} (MMEngine refuses this too)"
            )
        base.update(loaded)
    own = reader.read(tree, base)
    return merge(base, own)


def merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` merged into a copy of ``base`` with MMEngine's rules."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if (
            isinstance(value, dict)
            and not value.pop(DELETE, False)
            and isinstance(out.get(key), dict)
        ):
            out[key] = merge(out[key], value)
        else:
            out[key] = _strip_delete(copy.deepcopy(value))
    return out


def _strip_delete(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_delete(v) for k, v in value.items() if k != DELETE}
    if isinstance(value, list):
        return [_strip_delete(v) for v in value]
    return value


class _FileReader:
    """Evaluates one file's statements."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: ast.AST, message: str) -> ConfigReadError:
        return ConfigReadError(f"{self.path}:{getattr(node, 'lineno', '?')}: {message}")

    def base_paths(self, tree: ast.Module) -> list[Path]:
        for node in tree.body:
            if isinstance(node, ast.Assign) and _is_name(node.targets[0], BASE):
                value = self.literal(node.value, {}, None)
                names = [value] if isinstance(value, str) else value
                if not isinstance(names, list | tuple) or not all(
                    isinstance(n, str) for n in names
                ):
                    raise self.fail(node, "_base_ must be a path or a list of paths")
                return [self.base_path(node, n) for n in names]
        return []

    def base_path(self, node: ast.AST, name: str) -> Path:
        if "::" in name:
            raise self.fail(
                node,
                f"unsupported _base_ path {name!r}: '::' names another package's configs; "
                "give the file's path relative to this config",
            )
        return (self.path.parent / name).resolve()

    def read(self, tree: ast.Module, base: dict[str, Any]) -> dict[str, Any]:
        names: dict[str, Any] = {}
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # a docstring
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(_is_name(t, BASE) for t in targets):
                    continue  # read by base_paths
                if node.value is None:
                    continue
                value = self.literal(node.value, names, base)
                for target in targets:
                    self.assign(target, value, names, base)
                continue
            if isinstance(node, ast.ImportFrom | ast.Import | ast.With):
                raise self.fail(
                    node,
                    "imports (and MMEngine's read_base() form) are not read: use _base_ = "
                    "[...] paths",
                )
            raise self.fail(node, f"only assignments are read, found {type(node).__name__}")
        return {k: v for k, v in names.items() if not k.startswith("__")}

    def assign(self, target: ast.AST, value: Any, names: dict, base: dict) -> None:
        if isinstance(target, ast.Name):
            names[target.id] = value
            return
        if isinstance(target, ast.Attribute):  # _base_.a.b = value
            chain = _attribute_chain(target)
            if chain is None or chain[0] != BASE:
                raise self.fail(target, "only names and _base_.x.y can be assigned")
            node = base
            for key in chain[1:-1]:
                if not isinstance(node.get(key), dict):
                    raise self.fail(
                        target, f"{'.'.join(chain)}: {key!r} is not a dict in the bases"
                    )
                node = node[key]
            node[chain[-1]] = copy.deepcopy(value)
            return
        if isinstance(target, ast.Tuple | ast.List):
            if not isinstance(value, list | tuple) or len(value) != len(target.elts):
                raise self.fail(target, "cannot unpack the value into these names")
            for t, v in zip(target.elts, value, strict=True):
                self.assign(t, v, names, base)
            return
        raise self.fail(target, f"cannot assign to {type(target).__name__}")

    def literal(self, node: ast.AST, names: dict, base: dict | None) -> Any:
        """The value of expression ``node``."""
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.literal(e, names, base) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values, strict=True):
                if k is None:  # {**other}
                    out.update(self.mapping(v, names, base))
                else:
                    out[self.literal(k, names, base)] = self.literal(v, names, base)
            return out
        if isinstance(node, ast.Call) and _is_name(node.func, "dict"):
            out = {}
            for arg in node.args:
                out.update(self.mapping(arg, names, base))
            for kw in node.keywords:
                if kw.arg is None:
                    out.update(self.mapping(kw.value, names, base))
                else:
                    out[kw.arg] = self.literal(kw.value, names, base)
            return out
        if isinstance(node, ast.Name):
            if node.id in names:
                return copy.deepcopy(names[node.id])
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            raise self.fail(node, f"name {node.id!r} is not defined before this line")
        if isinstance(node, ast.Attribute | ast.Subscript) and base is not None:
            return copy.deepcopy(self.base_value(node, base))
        if isinstance(node, ast.BinOp):
            left = self.literal(node.left, names, base)
            right = self.literal(node.right, names, base)
            return self.binary(node, left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self.literal(node.operand, names, base)
            if not isinstance(value, int | float):
                raise self.fail(node, "a sign before a non-number")
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Set) and len(node.elts) == 1 and isinstance(node.elts[0], ast.Set):
            # {{_base_.x}} left unsubstituted (e.g. spread over lines): the base value
            return self.literal(node.elts[0].elts[0], names, base)
        raise self.fail(node, f"not a literal value: {ast.unparse(node)[:60]!r}")

    def mapping(self, node: ast.AST, names: dict, base: dict | None) -> dict:
        value = self.literal(node, names, base)
        if not isinstance(value, dict):
            raise self.fail(node, "** needs a dict")
        return value

    def base_value(self, node: ast.AST, base: dict) -> Any:
        if isinstance(node, ast.Subscript):
            container = self.base_value(node.value, base)
            key = self.literal(node.slice, {}, None)
            try:
                return container[key]
            except (KeyError, IndexError, TypeError):
                raise self.fail(node, f"{ast.unparse(node)}: no such value in the bases") from None
        chain = _attribute_chain(node)
        if chain is None or chain[0] != BASE:
            raise self.fail(node, f"not a literal value: {ast.unparse(node)[:60]!r}")
        value: Any = base
        for key in chain[1:]:
            if not isinstance(value, dict) or key not in value:
                raise self.fail(node, f"{'.'.join(chain)}: no such value in the bases")
            value = value[key]
        return value

    def binary(self, node: ast.BinOp, left: Any, right: Any) -> Any:
        ops = {
            ast.Add: lambda a, b: a + b,
            ast.Sub: lambda a, b: a - b,
            ast.Mult: lambda a, b: a * b,
            ast.Div: lambda a, b: a / b,
            ast.FloorDiv: lambda a, b: a // b,
        }
        op = ops.get(type(node.op))
        if op is None:
            raise self.fail(node, f"operator {type(node.op).__name__} is not read")
        try:
            return op(left, right)
        except (TypeError, ZeroDivisionError) as e:
            raise self.fail(node, f"{ast.unparse(node)[:60]}: {e}") from None


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _attribute_chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]
