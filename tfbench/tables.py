"""Markdown tables: what TensorBoard's Text dashboard renders as a table (plain text, no TensorFlow needed).

Shared by :mod:`tfbench.summaries` (which re-exports :func:`markdown_table` for the commands) and
:mod:`tfbench.graph_views` (the grappler before/after table), so neither has to import the other.
"""

from __future__ import annotations

from typing import Any, Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-style markdown table (what TensorBoard's Text dashboard renders as a table)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
