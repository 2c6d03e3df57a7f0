"""Timing done right: warm-ups first, every call blocked until its result exists, medians of repeats.

- warm-up calls run first and are not timed (they trace, compile and fill caches);
- every timed call blocks until its result exists (tensors are copied to NumPy), so
  asynchronous execution cannot make a call look faster than it is;
- cases compared with each other run round robin in one process (:func:`compare`), so a burst of
  load from another process hits every case alike and their ratios stay meaningful.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from tfbench.plumbing.errors import UserError


@dataclass
class Timing:
    """Summary of repeated timings of one case, in milliseconds."""

    case: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The JSON row: the timing fields plus any extra columns."""
        data = asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        return data


def block(result: Any) -> Any:
    """Wait for every tensor in ``result`` (a nested structure) by copying it to NumPy."""
    import tensorflow as tf

    def _to_numpy(x: Any) -> Any:
        return x.numpy() if hasattr(x, "numpy") else x

    return tf.nest.map_structure(_to_numpy, result)


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, by nearest rank."""
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def measure(
    case: str,
    fn: Callable[[], Any],
    *,
    warmup: int = 2,
    repeats: int = 10,
    **extra: Any,
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; return the summary."""
    return compare({case: fn}, warmup=warmup, repeats=repeats, **extra)[0]


def compare(
    cases: dict[str, Callable[[], Any]],
    *,
    warmup: int = 2,
    repeats: int = 10,
    **extra: Any,
) -> list[Timing]:
    """Time several cases side by side: warm each up, then run them round-robin, one call each per round.

    Interleaving means a burst of load from another process hits every case alike, so the
    ratios between cases stay meaningful on a busy machine.
    """
    if repeats < 1:
        raise UserError(f"repeats must be at least 1, got {repeats}")
    for fn in cases.values():
        for _ in range(warmup):
            block(fn())
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            block(fn())
            times[name].append((time.perf_counter() - start) * 1e3)
    return [summarise(name, samples, extra) for name, samples in times.items()]


def summarise(case: str, samples: list[float], extra: dict[str, Any] | None = None) -> Timing:
    """A :class:`Timing` (median, p10, p90) from raw per-call times in milliseconds."""
    samples = sorted(samples)
    return Timing(case=case, median_ms=statistics.median(samples), p10_ms=percentile(samples, 0.1),
                  p90_ms=percentile(samples, 0.9), repeats=len(samples), extra=dict(extra or {}))
