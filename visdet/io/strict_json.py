"""JSON that every reader accepts: NaN and infinities (which Python's json writes as bare
``NaN``/``Infinity``, invalid JSON) become ``null``."""

from __future__ import annotations

import json
import math


def finite_or_none(value):
    """``value`` with every non-finite float inside dicts, lists and tuples replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps_strict(value, indent: int | None = 2) -> str:
    """Strict JSON text of ``value`` (non-finite floats as null)."""
    return json.dumps(finite_or_none(value), indent=indent, allow_nan=False)


def read_json_file(path, what: str, error: type[Exception] = ValueError):
    """The JSON value in ``path``: FileNotFoundError ``<what> not found: <path>`` when it is
    missing, ``error`` ``<what> <path> is not valid JSON: ...`` when it cannot be parsed."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what} {path} is not valid JSON: {e}") from None
