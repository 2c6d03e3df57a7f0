"""Per-step time split into all-reduce and the rest, read from the profiler trace TensorFlow wrote.

Part of exercise 5.3 (:mod:`tfbench.distributed`).  ``tf.profiler.experimental.start/stop``
writes ``plugins/profile/<ts>/<host>.xplane.pb`` (what TensorBoard's Profile tab shows).  Its
host plane has one event per call of our ``distributed_step`` function and one per executed
op, named ``<op name>:<op type>``.  For each step we take the union of the intervals of the
collective ops (``CollectiveReduceV2``, ``NcclAllReduce`` ...) that fall inside it: that is
the all-reduce time, *including* the time a replica waits for the slowest one (a collective
cannot finish before every replica has contributed).  The rest of the step is compute,
input and overhead.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

STEP_EVENT = "distributed_step"
COLLECTIVE_OPS = ("CollectiveReduceV2", "CollectiveReduce", "NcclAllReduce", "CollectiveGatherV2",
                  "CollectiveBcastSendV2", "CollectiveBcastRecvV2")


def _xspace(path: Path):
    try:
        from tsl.profiler.protobuf import xplane_pb2
    except ImportError:  # older layouts
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    return space


def latest_trace(run_dir: str | Path) -> Path | None:
    """The newest ``*.xplane.pb`` under ``run_dir/plugins/profile``."""
    traces = sorted(Path(run_dir).glob("plugins/profile/*/*.xplane.pb"))
    return traces[-1] if traces else None


def _union_length(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def step_split(trace: str | Path) -> dict[str, Any]:
    """Per profiled step: wall ms and all-reduce ms (union of collective op intervals within the step)."""
    space = _xspace(Path(trace))
    steps: list[tuple[int, int]] = []
    collectives: list[tuple[int, int]] = []
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            base = line.timestamp_ns * 1000
            for event in line.events:
                name = names.get(event.metadata_id, "")
                start = base + event.offset_ps
                if name == STEP_EVENT:
                    steps.append((start, start + event.duration_ps))
                elif name.rpartition(":")[2] in COLLECTIVE_OPS:
                    collectives.append((start, start + event.duration_ps))
    steps.sort()
    step_ms, allreduce_ms = [], []
    for a, b in steps:
        inside = [(max(a, c), min(b, d)) for c, d in collectives if c < b and d > a]
        step_ms.append((b - a) / 1e9)
        allreduce_ms.append(_union_length(inside) / 1e9)
    result: dict[str, Any] = {"trace": str(trace), "steps": len(steps), "step_ms": step_ms,
                              "allreduce_ms": allreduce_ms}
    if steps:
        result["median_step_ms"] = statistics.median(step_ms)
        result["median_allreduce_ms"] = statistics.median(allreduce_ms)
        result["median_other_ms"] = statistics.median(s - r for s, r in zip(step_ms, allreduce_ms))
    return result
