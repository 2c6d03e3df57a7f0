"""TensorFlow's own stderr while a report runs: captured, failures named, the rest summarised in one line.

TensorFlow's C++ side logs straight to file descriptor 2: a grappler pass that fails (``remapper
failed: ...``, ``tfg_optimizer{...} failed: ...``, ``Ignoring multi-device function optimization
failure``) is only a log line, repeated once per function it optimises, and the graph then runs
without that pass, or unoptimised.  :func:`capture` points descriptor 2 at a temporary file while
a report runs (Python's own ``sys.stderr``, where ``inspect`` prints its progress, still reaches
the terminal), and :func:`summarise` turns what TensorFlow wrote into the failures, by what failed,
and one line for everything else.  Used by :mod:`tfbench.inspection.api` and
:mod:`tfbench.inspection.rewrites`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator


@dataclass
class Captured:
    """What TensorFlow wrote to stderr between the start and the end of one :func:`capture`."""

    _file: Any = None
    _start: int = 0
    _text: str | None = None

    @property
    def text(self) -> str:
        """The captured text (so far, while the capture runs)."""
        if self._text is not None:
            return self._text
        self._file.flush()
        self._file.seek(self._start)
        data = self._file.read()
        self._file.seek(0, os.SEEK_END)
        return data.decode("utf-8", "replace")


_ACTIVE: list[Any] = []  # the temporary file of the capture in force (descriptor 2 points at it)


@contextlib.contextmanager
def capture() -> Iterator[Captured]:
    """Send descriptor 2 (TensorFlow's C++ logs) to a temporary file for the block; Python's stderr stays.

    Nested inside another capture, it gives the part of the outer capture written during the block.
    """
    if _ACTIVE:
        outer = _ACTIVE[-1]
        outer.flush()
        view = Captured(outer, outer.seek(0, os.SEEK_END))
        try:
            yield view
        finally:
            view._text = view.text
        return
    sys.stderr.flush()
    log = tempfile.TemporaryFile()
    saved = os.dup(2)
    python_stderr = sys.stderr
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    os.dup2(log.fileno(), 2)
    sys.stderr = terminal
    _ACTIVE.append(log)
    view = Captured(log, 0)
    try:
        yield view
    finally:
        _ACTIVE.pop()
        terminal.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr = python_stderr
        terminal.close()
        view._text = view.text
        log.close()


_FAILED = re.compile(r"(?:\] |^)([A-Za-z_][\w.]*)(?:\{.*\})? failed: ([A-Z_]+: .*)$")
_IGNORED = re.compile(r"Ignoring (multi-device function optimization) failure: (.*)$")
_PREFIX = re.compile(r"^[EWIF]\d{4} [\d:. ]+\s+\d+ [\w.]+:\d+\] ")


@dataclass
class LogSummary:
    """Failures by what failed (each with a count and its first message), and how much else was written."""

    lines: int = 0
    distinct: int = 0
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    sample: list[str] = field(default_factory=list)  # the distinct lines, without time stamps (at most 40)

    def line(self) -> str:
        """One sentence for the report."""
        if not self.lines:
            return "TensorFlow wrote nothing to stderr"
        text = f"TensorFlow wrote {self.lines} lines to stderr ({self.distinct} distinct)"
        if self.failures:
            text += "; failures: " + "; ".join(f"{name} x {f['count']} ({f['message'][:160]})"
                                               for name, f in self.failures.items())
        return text + " (all of them in the JSON's tf_log)"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"lines": self.lines, "distinct": self.distinct, "failures": self.failures, "sample": self.sample}


def summarise(text: str) -> LogSummary:
    """Count the lines, group the failures by what failed, keep the distinct lines without time stamps."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    plain = [_PREFIX.sub("", line) for line in lines]
    failures: dict[str, dict[str, Any]] = {}
    for line in plain:
        found = _FAILED.search(line) or _IGNORED.search(line)
        if found:
            name, message = found.group(1), found.group(2)
            entry = failures.setdefault(name, {"count": 0, "message": message})
            entry["count"] += 1
    distinct = list(Counter(plain))
    return LogSummary(len(lines), len(distinct), failures, distinct[:40])
