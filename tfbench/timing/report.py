"""A benchmark's result: one table on the terminal and one JSON file under ``logs/bench/``.

The JSON holds ``{"bench", "device", "cpu", "cpu_flags", "onednn", "onednn_reason", "intra_op_threads",
"inter_op_threads", "tf_version", "keras_version", "python", "rows": [...], "ratios": {...}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tfbench.plumbing import paths
from tfbench.plumbing.files import write_json
from tfbench.timing.machine import machine_info, print_header
from tfbench.timing.measure import Timing


def report(
    bench: str,
    rows: Sequence[Timing | dict[str, Any]],
    ratios: dict[str, float] | None = None,
    *,
    logdir: str | Path = paths.DEFAULT_LOGDIR,
    extra: dict[str, Any] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Print a table, write ``logs/bench/<bench>-<timestamp>.json`` atomically, return the report."""
    data: dict[str, Any] = {"bench": bench, **machine_info()}
    data["rows"] = [r.row() if isinstance(r, Timing) else dict(r) for r in rows]
    data["ratios"] = dict(ratios or {})
    data.update(extra or {})
    path = Path(logdir) / "bench" / f"{bench}-{paths.timestamp()}.json"
    write_json(path, data)
    data["path"] = str(path)
    if not quiet:
        print_header(bench)
        print(format_table(data["rows"]))
        for name, value in data["ratios"].items():
            print(f"{name}: {value:.2f}x")
        print(f"report: {path}")
    return data


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of the rows (all keys as columns, floats to 3 significant digits)."""
    if not rows:
        return "(no rows)"
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return "" if value is None else str(value)

    table = [columns] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
