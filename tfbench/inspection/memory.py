"""Memory of one model: torchsummary's estimate beside the measured peak of a forward and a training step.

The estimate is the table the course's answers print with ``torchsummary.summary`` (all in MB, 1 MB =
1024**2 bytes, float32): *input size* (one batch), *forward/backward pass size* (every layer's
output, twice: kept for the backward pass and its gradient), *params size* (every weight, trainable
or not) and their sum, the *estimated total*.

The measurement is what this process really used: its resident set (``/proc/self/statm``, sampled
every millisecond by a thread) at its highest during the first eager forward call, then during the
first eager training step run after it (forward under a ``GradientTape`` and the gradients of a
mean-square loss; no optimizer state) at the chosen batch, both above the same starting point, the
RSS before the forward.  So the training step's row holds the forward's memory plus what the backward
pass adds, and comes out below the forward's only when memory went back to the system between the two
(the report then says how much).  TensorFlow's own allocator statistics
(``tf.config.experimental.get_memory_info``) report nothing on CPU, so RSS it is; it includes what the
allocator keeps cached and what TensorFlow builds on a first call (kernels, thread pools).
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from tfbench.plumbing.errors import first_line

MB = 1024.0 ** 2
BYTES_F32 = 4


@dataclass
class MemoryReport:
    """torchsummary's columns (MB) and the measured RSS growth (MB) of one forward and one training step."""

    batch: int
    input_mb: float
    forward_backward_mb: float
    params_mb: float
    estimated_total_mb: float
    measured_forward_mb: float | None = None
    measured_train_step_mb: float | None = None
    peak_rss_mb: float | None = None  # the process's RSS at its highest during the two measurements
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The fields as plain JSON types."""
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """``(what, MB)`` rows, estimate first, then the measurements."""
        def mb(v: float | None) -> str:
            return "-" if v is None else f"{v:,.2f}"
        return [("input size", mb(self.input_mb)), ("forward/backward pass size", mb(self.forward_backward_mb)),
                ("params size", mb(self.params_mb)), ("estimated total", mb(self.estimated_total_mb)),
                ("measured: first forward call, peak RSS above the start", mb(self.measured_forward_mb)),
                ("measured: training step after it, peak RSS above the same start", mb(self.measured_train_step_mb)),
                ("measured: peak RSS of the process", mb(self.peak_rss_mb))]


def estimate(input_shape: tuple[int, ...], output_elements: int, params: int, batch: int) -> MemoryReport:
    """torchsummary's estimate: ``output_elements`` is the sum over layers of one example's output elements."""
    input_mb = batch * math.prod(map(int, input_shape)) * BYTES_F32 / MB
    forward_backward = 2.0 * batch * output_elements * BYTES_F32 / MB
    params_mb = params * BYTES_F32 / MB
    return MemoryReport(batch, input_mb, forward_backward, params_mb, input_mb + forward_backward + params_mb)


def rss_bytes() -> int:
    """The resident set size of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_growth(fn: Callable[[], Any], interval_s: float = 0.001,
                    start: int | None = None) -> tuple[float, float]:
    """(highest RSS minus ``start``, highest RSS) in MB while ``fn()`` runs, sampled by a thread.

    ``start`` is the RSS in bytes to measure from (default: the RSS when ``fn`` starts).
    """
    start = rss_bytes() if start is None else start
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    peak[0] = max(peak[0], rss_bytes())
    return (peak[0] - start) / MB, peak[0] / MB


def measure(report: MemoryReport, call: Callable[[Any], Any], variables: list[Any], x: Any) -> MemoryReport:
    """Fill in the measured forward and training-step growth (eager, first call of each)."""
    import tensorflow as tf

    from tfbench.timing import block

    start = rss_bytes()
    forward, high = peak_rss_growth(lambda: block(call(x)), start=start)
    report.measured_forward_mb = forward
    between = rss_bytes()

    def step() -> None:
        with tf.GradientTape() as tape:
            y = call(x)
            loss = tf.reduce_mean(tf.square(tf.cast(y, tf.float32)))
        block(tape.gradient(loss, variables))

    if variables:
        try:
            train, high2 = peak_rss_growth(step, start=start)
            report.measured_train_step_mb, high = train, max(high, high2)
            if train < forward:
                report.note = (f"the training step peaked {forward - train:,.1f} MB below the first forward call: "
                               f"the forward's peak held {forward - (between - start) / MB:,.1f} MB that went "
                               "back to the system when it returned, and the step's own peak, with the "
                               "first call's one-time setup already done, stayed lower")
        except (ValueError, TypeError, LookupError, tf.errors.OpError) as err:
            report.note = f"training step not measured: {type(err).__name__}: {first_line(err, 200)}"
    else:
        report.note = "training step not measured: the model has no trainable variables"
    report.peak_rss_mb = high
    return report

