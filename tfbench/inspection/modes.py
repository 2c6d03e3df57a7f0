"""One model run three ways (eager, ``tf.function``, XLA) and in bfloat16: outputs compared, latencies side by side.

The three float32 modes run the same weights on the same seeded batch; each output is compared
with the eager one (largest absolute difference), and the three are timed round robin
(:func:`tfbench.timing.compare`: warm-ups excluded, one call of each per round) so load from
other processes hits them alike.  bfloat16 (a Keras model's layers cloned under the
``mixed_bfloat16`` policy: float32 weights, bfloat16 arithmetic) runs only where the CPU has
native bfloat16 arithmetic (AVX512_BF16 or AMX); elsewhere it is skipped with that reason,
because emulated bfloat16 is slower than float32 and says nothing about the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from tfbench.plumbing.errors import first_line


@dataclass
class ModeRow:
    """One way of running the model: its largest output difference from eager and its latency."""

    mode: str
    max_abs_diff: float | None
    median_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    note: str = ""


@dataclass
class ModesReport:
    """The rows, the batch and the repeats they were timed with, and bfloat16's row or the reason it is absent."""

    batch: int
    repeats: int
    rows: list[ModeRow] = field(default_factory=list)
    bfloat16_skipped: str = ""
    failures: list[str] = field(default_factory=list)  # grappler failures logged while the modes ran

    def row(self, mode: str) -> ModeRow | None:
        """The row of ``mode`` ("eager", "tf.function", "XLA", "bfloat16 tf.function"), if it ran."""
        return next((r for r in self.rows if r.mode == mode), None)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"batch": self.batch, "repeats": self.repeats, "rows": [asdict(r) for r in self.rows],
                "bfloat16_skipped": self.bfloat16_skipped, "failures": self.failures}


def _max_diff(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def run_modes(call: Callable[[Any], Any], x: Any, *, keras_model: Any = None, warmup: int = 1,
              repeats: int = 5, cpu_flags: dict[str, bool] | None = None) -> ModesReport:
    """Eager, ``tf.function`` and XLA (and bfloat16 when the CPU has it) on batch ``x``, compared and timed."""
    import tensorflow as tf

    from tfbench import timing

    report = ModesReport(int(x.shape[0]), repeats)
    reference = timing.block(call(x))
    cases: dict[str, Callable[[], Any]] = {"eager": lambda: call(x)}
    diffs: dict[str, float | None] = {"eager": 0.0}
    notes: dict[str, str] = {}
    for mode, fn in (("tf.function", tf.function(call)), ("XLA", tf.function(call, jit_compile=True))):
        try:
            diffs[mode] = _max_diff(timing.block(fn(x)), reference)
            cases[mode] = lambda fn=fn: fn(x)
        except (tf.errors.OpError, ValueError, TypeError, NotImplementedError) as err:
            diffs[mode], notes[mode] = None, f"did not run: {type(err).__name__}: {first_line(err, 160)}"
    flags = cpu_flags if cpu_flags is not None else timing.machine_info()["cpu_flags"]
    if not any(flags.get(f) for f in timing.BF16_FLAGS):
        report.bfloat16_skipped = ("this CPU has no native bfloat16 arithmetic (AVX512_BF16 or AMX); emulated "
                                   "bfloat16 would only be slower")
    elif keras_model is None:
        report.bfloat16_skipped = "bfloat16 needs a Keras model to clone under the mixed_bfloat16 policy"
    else:
        try:
            from tfbench.models.precision import clone_under_policy

            twin = clone_under_policy(keras_model, "mixed_bfloat16")
            fn16 = tf.function(lambda t: twin(t, training=False))
            diffs["bfloat16 tf.function"] = _max_diff(tf.cast(fn16(x), tf.float32), reference)
            cases["bfloat16 tf.function"] = lambda: fn16(x)
            notes["bfloat16 tf.function"] = "mixed_bfloat16: float32 weights, bfloat16 arithmetic"
        except (ValueError, TypeError, KeyError, tf.errors.OpError) as err:
            report.bfloat16_skipped = f"the model could not be cloned in bfloat16: {first_line(err, 160)}"
    timings = {t.case: t for t in timing.compare(cases, warmup=warmup, repeats=repeats)}
    for mode, diff in diffs.items():
        t = timings.get(mode)
        report.rows.append(ModeRow(mode, diff, t.median_ms if t else None, t.p10_ms if t else None,
                                   t.p90_ms if t else None, notes.get(mode, "")))
    for mode, note in notes.items():
        if mode not in diffs:
            report.rows.append(ModeRow(mode, None, note=note))
    return report
