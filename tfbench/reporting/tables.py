"""Markdown tables and the numbers in them, as TensorBoard's Text dashboard renders them (no TensorFlow needed).

Shared by :mod:`tfbench.reporting.summaries` (which re-exports :func:`markdown_table` for the commands) and
:mod:`tfbench.reporting.graph_views` (the grappler before/after table), so neither has to import the other.
"""

from __future__ import annotations

from typing import Any, Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-style markdown table (what TensorBoard's Text dashboard renders as a table)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def cell(value: Any) -> str:
    """A table cell: floats to 4 significant digits, anything else as ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_rows(rows: Sequence[dict[str, Any]]) -> str:
    """Rows of dicts (the keys of the first are the header) as a markdown table, cells by :func:`cell`;
    ``(nothing)`` when there are none."""
    if not rows:
        return "(nothing)"
    return markdown_table(list(rows[0]), [[cell(v) for v in row.values()] for row in rows])


def si(n: float) -> str:
    """1.23 G / 416.5 k style, for totals that span LeNet to ResNet-152."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n:g}"
