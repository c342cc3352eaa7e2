"""Runtime model spec: the JSON file that tells the WhiskerToolbox deep-learning library how to
load and call an exported model (see DESIGN.md, "Runtime model spec").

``spec_from_dict`` / ``read_spec`` parse and validate; ``spec_to_dict`` / ``write_spec`` produce
the JSON form; ``resolve_weights`` finds the weights file and backend for a batch size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, NoReturn

from visdet.io.atomic_write import write_text_atomic

BACKENDS = ("auto", "torchscript", "aotinductor")
_BACKEND_ALIASES = {"jit": "torchscript", "aoti": "aotinductor", "inductor": "aotinductor"}
_BACKEND_BY_EXTENSION = {".pt": "torchscript", ".pt2": "aotinductor"}
INTERPOLATIONS = ("nearest", "bilinear")


class SpecError(ValueError):
    """An invalid model spec; the message names the file, the field path and the problem."""


@dataclass(frozen=True)
class TensorSlot:
    """One named input or output tensor; ``shape`` excludes the batch dimension."""

    name: str
    shape: tuple[int, ...]
    description: str = ""
    recommended_encoder: str | None = None
    recommended_decoder: str | None = None
    is_static: bool = False
    is_boolean_mask: bool = False
    sequence_dim: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))


@dataclass(frozen=True)
class BatchMode:
    """Batch sizes a model accepts: ``fixed`` exactly, or ``min..max`` (``max`` 0 = no limit)."""

    kind: str = "dynamic"
    fixed: int | None = None
    min: int = 1
    max: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "dynamic"):
            raise SpecError(f"batch_mode: expected kind 'fixed' or 'dynamic', got {self.kind!r}")

    def accepts(self, batch_size: int) -> bool:
        if self.kind == "fixed":
            return batch_size == self.fixed
        return batch_size >= self.min and (self.max == 0 or batch_size <= self.max)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"fixed batch size {self.fixed}"
        return f"dynamic batch size {self.min}..{self.max or 'unlimited'}"


@dataclass(frozen=True)
class WeightsVariant:
    """A weights file compiled for one batch size; ``backend`` None means the spec's backend."""

    path: str
    batch_size: int
    label: str | None = None
    backend: str | None = None


@dataclass(frozen=True)
class PostEncoderStep:
    """A post-encoder module (e.g. ``global_avg_pool``) applied to the model output."""

    module: str
    interpolation: str = "nearest"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed, validated runtime model spec."""

    model_id: str
    display_name: str
    inputs: tuple[TensorSlot, ...]
    outputs: tuple[TensorSlot, ...]
    description: str = ""
    weights_path: str | None = None
    backend: str = "auto"
    batch_mode: BatchMode = BatchMode()
    weights_variants: tuple[WeightsVariant, ...] = ()
    recommended_post_encoder: str | None = None
    post_encoder: tuple[PostEncoderStep, ...] = ()

    def __post_init__(self) -> None:
        for name in ("inputs", "outputs", "weights_variants", "post_encoder"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


def normalize_backend(value: str | None) -> str:
    """Canonical backend name; case-insensitive aliases; None, empty or unknown -> ``auto``."""
    name = (value or "").strip().lower()
    name = _BACKEND_ALIASES.get(name, name)
    return name if name in BACKENDS else "auto"


def backend_for_path(path: str | os.PathLike, backend: str) -> str:
    """Resolve ``auto`` by the weights file's extension (.pt torchscript, .pt2 aotinductor)."""
    backend = normalize_backend(backend)
    if backend != "auto":
        return backend
    suffix = Path(path).suffix.lower()
    if suffix not in _BACKEND_BY_EXTENSION:
        raise SpecError(
            f"{path}: backend 'auto' expects a .pt (torchscript) or .pt2 (aotinductor) file, "
            f"got extension {suffix or '(none)'!r}; set backend explicitly"
        )
    return _BACKEND_BY_EXTENSION[suffix]


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}


def _got(value: Any) -> str:
    """``value`` described for an error message: its JSON type and (shortened) text."""
    if value is None:
        return "null"
    kind = _JSON_TYPES.get(type(value)) or ("object" if isinstance(value, dict) else None)
    return f"{kind or type(value).__name__} {json.dumps(value, default=repr)[:60]}"


class _Reader:
    """Type-checking helpers that raise SpecError as ``source: field.path: message``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> NoReturn:
        raise SpecError(f"{self.source}: {path}: {message}")

    def required(self, obj: dict, key: str, prefix: str, parse: Callable, *args: Any) -> Any:
        if key not in obj:
            self.fail(f"{prefix}{key}", "required field is missing")
        return parse(obj[key], f"{prefix}{key}", *args)

    def optional(self, obj: dict, key: str, prefix: str, parse: Callable, *args: Any) -> Any:
        """The parsed value, or None when ``key`` is missing or null."""
        value = obj.get(key)
        return None if value is None else parse(value, f"{prefix}{key}", *args)

    def obj(self, value: Any, path: str) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"expected an object, got {_got(value)}")
        return value

    def array(self, value: Any, path: str, nonempty: bool = True) -> list:
        if not isinstance(value, list):
            self.fail(path, f"expected an array, got {_got(value)}")
        if nonempty and not value:
            self.fail(path, "expected a non-empty array, got []")
        return value

    def entries(self, value: Any, path: str, nonempty: bool) -> Iterator[tuple[str, dict]]:
        """``(field prefix, object)`` for each entry of an array of objects."""
        for i, raw in enumerate(self.array(value, path, nonempty)):
            yield f"{path}[{i}].", self.obj(raw, f"{path}[{i}]")

    def string(self, value: Any, path: str, nonempty: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {_got(value)}")
        if nonempty and not value.strip():
            self.fail(path, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {_got(value)}")
        if minimum is not None and value < minimum:
            self.fail(path, f"expected an integer >= {minimum}, got {value}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_got(value)}")
        return value

    def shape(self, value: Any, path: str) -> tuple[int, ...]:
        dims = self.array(value, path)
        return tuple(self.integer(n, f"{path}[{i}]", 1) for i, n in enumerate(dims))

    def slots(self, value: Any, path: str) -> tuple[TensorSlot, ...]:
        slots: list[TensorSlot] = []
        for p, d in self.entries(value, path, nonempty=True):
            name = self.required(d, "name", p, self.string, True)
            if name in (s.name for s in slots):
                self.fail(f"{p}name", f"duplicate slot name {name!r}")
            text, flag = self.string, self.boolean
            slots.append(
                TensorSlot(
                    name=name,
                    shape=self.required(d, "shape", p, self.shape),
                    description=self.optional(d, "description", p, text) or "",
                    recommended_encoder=self.optional(d, "recommended_encoder", p, text),
                    recommended_decoder=self.optional(d, "recommended_decoder", p, text),
                    is_static=bool(self.optional(d, "is_static", p, flag)),
                    is_boolean_mask=bool(self.optional(d, "is_boolean_mask", p, flag)),
                    sequence_dim=self.optional(d, "sequence_dim", p, self.integer),
                )
            )
        return tuple(slots)

    def batch_mode(self, value: Any, path: str) -> BatchMode:
        d = self.obj(value, path)
        if len(d) != 1 or next(iter(d)) not in ("fixed", "dynamic"):
            self.fail(path, f"expected exactly one of 'fixed' or 'dynamic', got keys {list(d)}")
        if "fixed" in d:
            return BatchMode("fixed", fixed=self.integer(d["fixed"], f"{path}.fixed", 1))
        p = f"{path}.dynamic."
        dynamic = self.obj(d["dynamic"], p[:-1])
        unknown = sorted(set(dynamic) - {"min", "max"})
        if unknown:
            self.fail(p[:-1], f"expected only 'min' and 'max', got unknown keys {unknown}")
        lo = self.integer(dynamic.get("min", 1), f"{p}min", 1)
        hi = self.integer(dynamic.get("max", 0), f"{p}max", 0)
        if 0 < hi < lo:
            self.fail(f"{p}max", f"expected 0 (unlimited) or >= min ({lo}), got {hi}")
        return BatchMode("dynamic", min=lo, max=hi)

    def variants(self, value: Any, path: str) -> tuple[WeightsVariant, ...]:
        variants: list[WeightsVariant] = []
        for p, d in self.entries(value, path, nonempty=False):
            file = self.required(d, "path", p, self.string, True)
            size = self.required(d, "batch_size", p, self.integer, 1)
            if size in (v.batch_size for v in variants):
                self.fail(f"{p}batch_size", f"duplicate batch_size {size}")
            label = self.optional(d, "label", p, self.string)
            backend = self.optional(d, "backend", p, self.string)
            backend = None if backend is None else normalize_backend(backend)
            variants.append(WeightsVariant(file, size, label, backend))
        return tuple(variants)

    def post_encoder(self, value: Any, path: str) -> tuple[PostEncoderStep, ...]:
        steps = []
        for p, d in self.entries(value, path, nonempty=False):
            module = self.required(d, "module", p, self.string, True)
            mode = self.optional(d, "interpolation", p, self.string) or "nearest"
            if mode not in INTERPOLATIONS:
                self.fail(f"{p}interpolation", f"expected one of {INTERPOLATIONS}, got {mode!r}")
            steps.append(PostEncoderStep(module, mode))
        return tuple(steps)


def spec_from_dict(data: Any, source: str = "<dict>") -> ModelSpec:
    """Parse and validate a spec dict; raises SpecError naming ``source`` and the field path.

    Rules beyond DESIGN.md: inputs and outputs must each hold at least one slot; slot names
    are unique within inputs and within outputs (an input and an output may share a name);
    shape dims must be positive (the batch dim is not part of the shape, so no -1 / 0
    placeholders); booleans are not integers; a null optional field counts as absent; unknown
    top-level keys are ignored, but ``batch_mode.dynamic`` accepts only ``min`` and ``max``.
    """
    r = _Reader(source)
    d = r.obj(data, "(top level)")
    return ModelSpec(
        model_id=r.required(d, "model_id", "", r.string, True),
        display_name=r.required(d, "display_name", "", r.string, True),
        inputs=r.required(d, "inputs", "", r.slots),
        outputs=r.required(d, "outputs", "", r.slots),
        description=r.optional(d, "description", "", r.string) or "",
        weights_path=r.optional(d, "weights_path", "", r.string, True),
        backend=normalize_backend(r.optional(d, "backend", "", r.string)),
        batch_mode=r.optional(d, "batch_mode", "", r.batch_mode) or BatchMode(),
        weights_variants=r.optional(d, "weights_variants", "", r.variants) or (),
        recommended_post_encoder=r.optional(d, "recommended_post_encoder", "", r.string),
        post_encoder=r.optional(d, "post_encoder", "", r.post_encoder) or (),
    )


def _compact(obj: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, without those at their default value."""
    return {
        f.name: getattr(obj, f.name)
        for f in fields(obj)
        if f.default is MISSING or getattr(obj, f.name) != f.default
    }


def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """The JSON form: optional fields only when not default; backend and batch_mode always."""
    out = _compact(spec)
    for key in ("inputs", "outputs"):
        out[key] = [_compact(s) | {"shape": list(s.shape)} for s in getattr(spec, key)]
    out["backend"] = spec.backend
    mode = spec.batch_mode
    if mode.kind == "fixed":
        out["batch_mode"] = {"fixed": mode.fixed}
    else:
        out["batch_mode"] = {"dynamic": {"min": mode.min, "max": mode.max}}
    for key in ("weights_variants", "post_encoder"):
        if key in out:
            out[key] = [_compact(item) for item in out[key]]
    for key in ("inputs", "outputs", "recommended_post_encoder", "post_encoder"):
        if key in out:  # move to the end, after the settings
            out[key] = out.pop(key)
    return out


def read_spec(path: str | os.PathLike) -> ModelSpec:
    """Read and validate a spec file; FileNotFoundError if missing, SpecError if invalid."""
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text: {e}") from None
    except json.JSONDecodeError as e:
        msg = f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        raise SpecError(msg) from None
    return spec_from_dict(data, source=str(path))


def write_spec(spec: ModelSpec, path: str | os.PathLike) -> None:
    """Validate ``spec`` and write it atomically as indented (ASCII-escaped) JSON."""
    data = spec_to_dict(spec)
    spec_from_dict(data, source=str(path))
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def resolve_weights(
    spec: ModelSpec, spec_path: str | os.PathLike, batch_size: int | None = None
) -> tuple[Path, str]:
    """The weights file (relative paths are against the spec file's folder) and its backend.

    A variant whose batch_size equals ``batch_size`` wins (with its own backend if set);
    otherwise ``weights_path`` with the spec's backend.
    """
    chosen = next((v for v in spec.weights_variants if v.batch_size == batch_size), None)
    if chosen is not None:
        file, backend = chosen.path, chosen.backend or spec.backend
    elif spec.weights_path is not None:
        file, backend = spec.weights_path, spec.backend
    else:
        sizes = [v.batch_size for v in spec.weights_variants]
        raise SpecError(
            f"{spec_path}: weights_path: no weights for batch size {batch_size}: the spec has "
            f"no weights_path and weights_variants for batch sizes {sizes}"
        )
    full = Path(file) if Path(file).is_absolute() else Path(spec_path).parent / file
    return full, backend_for_path(full, backend)
