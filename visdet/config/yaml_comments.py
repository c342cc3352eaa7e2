"""The comments of a block-style YAML config, by key: the comment lines just above a key and
the comment at the end of its line (the conf/ files document their keys that way)."""

from __future__ import annotations

import re

_KEY = re.compile(r"^(\s*)([A-Za-z_][\w\-]*)\s*:(\s.*|)$")


def _inline_comment(rest: str) -> str:
    # a '#' after whitespace outside quotes starts a comment
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[i + 1 :].strip()
    return ""


def yaml_comments(text: str) -> dict[str, str]:
    """``{dotted.key: comment}``. The leading comment block (Hydra's ``# @package``, the
    file's own description) belongs to no key. Keys inside list items (a defaults list) are
    not tracked."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        i += 1
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings
    pending: list[str] = []
    for line in lines[i:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match:
            pending = []  # a blank line or a list item ends a comment block
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [match.group(2)])
        text_ = " ".join([*pending, _inline_comment(match.group(3))]).strip()
        if text_:
            out[key] = text_
        pending = []
        stack.append((indent, match.group(2)))
    return out
