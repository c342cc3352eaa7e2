"""Aligned plain-text tables for the summaries the tools print."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def format_columns(
    rows: Sequence[Sequence[str]], right: Collection[int] = (), rule: bool = False
) -> list[str]:
    """Lines of ``rows`` (the first is the header) in columns two spaces apart; columns in
    ``right`` are right-aligned; ``rule`` puts a dashed line under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return lines
