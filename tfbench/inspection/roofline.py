"""The roofline's library half: this machine's peaks, layers timed alone, points, the picture.

Shared by ``python -m tfbench.roofline`` (exercise 6.10: VGG19, ResNet-50, LeNet-5 and the fusion
blocks) and ``python -m tfbench.inspect`` (any model the user brings).  A :class:`Point` is one
thing placed under the roof: FLOPs (the counted multiplications + additions), the float32 bytes it
must move at least once (inputs, output, weights) and its measured time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tfbench.plumbing.files import atomic_output

BYTES_F32 = 4

@dataclass
class Point:
    """One thing on the roofline: FLOPs, bytes moved, measured time, and what that makes."""

    group: str  # "vgg19", "resnet50", "lenet5", "fusion", "model"
    name: str
    kind: str
    flops: int
    bytes: int
    median_ms: float
    p10_ms: float = 0.0
    p90_ms: float = 0.0
    load_scale: float = 1.0  # best peak / the peak measured in this point's own rounds (1: the least loaded rounds)

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte."""
        return self.flops / self.bytes if self.bytes else 0.0

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s."""
        return self.flops / (self.median_ms * 1e6) if self.median_ms else 0.0

    @property
    def gbytes_per_s(self) -> float:
        """Achieved GB/s (of the minimum bytes)."""
        return self.bytes / (self.median_ms * 1e6) if self.median_ms else 0.0

    def row(self, peak_gflops: float, bandwidth: float) -> dict[str, Any]:
        """The JSON/table row, with the roofline bound at this intensity and the fraction reached.

        ``peak_gflops`` and ``bandwidth`` should be the ones measured in this point's own rounds,
        so ``of_bound`` compares numbers taken under the same load.
        """
        bound = min(peak_gflops, self.intensity * bandwidth)
        return {**asdict(self), "intensity": self.intensity, "gflops": self.gflops, "gb_per_s": self.gbytes_per_s,
                "gflops_load_adjusted": self.gflops * self.load_scale,
                "bound_gflops": bound, "of_bound": self.gflops / bound if bound else 0.0,
                "memory_bound": self.intensity < peak_gflops / bandwidth}


# ---------------------------------------------------------------------------------------------- peaks


class PeakProbe:
    """The ceilings as three timed cases (float32 and bfloat16 N x N matmul, a large float32 add).

    Every timing group of the run (each model's layers, the fusion blocks, the forward passes)
    runs these cases in its own rounds, so a group's fraction of the peak compares numbers taken
    under the same load; the roofline drawn is the best of all of them, the closest to what the
    machine can do.
    """

    PREFIX = "peak: "

    def __init__(self, matmul_size: int, add_elements: int):
        import tensorflow as tf

        n = self.matmul_size = matmul_size
        self.add_elements = add_elements
        a32 = tf.random.stateless_normal((n, n), seed=[0, 1])
        b32 = tf.random.stateless_normal((n, n), seed=[0, 2])
        a16, b16 = tf.cast(a32, tf.bfloat16), tf.cast(b32, tf.bfloat16)
        x = tf.random.stateless_normal((add_elements,), seed=[0, 3])
        y = tf.random.stateless_normal((add_elements,), seed=[0, 4])
        matmul = tf.function(lambda p, q: tf.reshape(tf.matmul(p, q), [-1])[0])
        add = tf.function(lambda p, q: tf.reshape(p + q, [-1])[0])
        self._cases = {f"{self.PREFIX}matmul float32": lambda: matmul(a32, b32),
                       f"{self.PREFIX}matmul bfloat16": lambda: matmul(a16, b16),
                       f"{self.PREFIX}add float32": lambda: add(x, y)}
        self.samples: list[dict[str, Any]] = []

    def cases(self) -> dict[str, Callable[[], Any]]:
        """The three cases, to time in the same rounds as a group's own cases."""
        return dict(self._cases)

    def take(self, timings: dict[str, Any], group: str) -> dict[str, float]:
        """Remove the probe's timings from ``timings``; record and return the rates they give."""
        flops, moved = 2 * self.matmul_size ** 3, 3 * BYTES_F32 * self.add_elements
        rates = {"group": group,
                 "float32_gflops": flops / (timings.pop(f"{self.PREFIX}matmul float32").median_ms * 1e6),
                 "bfloat16_gflops": flops / (timings.pop(f"{self.PREFIX}matmul bfloat16").median_ms * 1e6),
                 "bandwidth_gb_per_s": moved / (timings.pop(f"{self.PREFIX}add float32").median_ms * 1e6)}
        self.samples.append(rates)
        return rates

    def peaks(self) -> dict[str, Any]:
        """The best of each ceiling over every group, and every group's own measurement."""
        best = {key: max(s[key] for s in self.samples)
                for key in ("float32_gflops", "bfloat16_gflops", "bandwidth_gb_per_s")}
        return {"matmul_size": self.matmul_size, "add_elements": self.add_elements, **best,
                "per_group": list(self.samples)}


def measure_peaks(*, matmul_size: int, add_elements: int, warmup: int, repeats: int) -> dict[str, Any]:
    """float32 and bfloat16 matmul GFLOP/s and elementwise-add GB/s, timed round robin (one group on its own)."""
    from tfbench import timing

    probe = PeakProbe(matmul_size, add_elements)
    timings = {t.case: t for t in timing.compare(probe.cases(), warmup=warmup, repeats=repeats)}
    probe.take(timings, "peaks")
    return probe.peaks()


# --------------------------------------------------------------------------------------------- layers


def _reduce_first(y: Any) -> Any:
    """One element of the output: the whole layer still runs, but nothing big is copied back to NumPy."""
    import tensorflow as tf

    return tf.reshape(y, [-1])[0]


def layer_workloads(model: Any, batch: int, seed: int = 0, input_shape: Sequence[int] | None = None
                    ) -> list[tuple[Any, Any, Callable[[], Any], list[Any]]]:
    """``(record, count, call, inputs)`` for every call in a Keras model (its call graph, one entry per call).

    ``record`` is the :class:`tfbench.models.call_graph.CallRecord` (``record.name`` is unique per
    call), ``count`` its :class:`tfbench.models.counting.LayerCount` (per example); ``call`` runs that
    call alone in a ``tf.function`` on seeded random inputs of its shapes (integer inputs are zeros,
    masks all true).  ``input_shape`` walks the model at that shape (default: the model's own).
    """
    import tensorflow as tf

    from tfbench.models.call_graph import walk
    from tfbench.models.counting import count_call, model_input

    shape, dtype = model_input(model, input_shape)
    out = []
    for i, record in enumerate(walk(model, shape, dtype)):
        count = count_call(record.operation, record.args, record.kwargs, record.outputs, record.name,
                           record.call_index == 1)
        inputs = [_random_input((batch, *t.shape[1:]), t.dtype, [seed, i * 7 + j])
                  for j, t in enumerate(record.inputs)]

        fn = tf.function(_runner(record))
        out.append((record, count, lambda fn=fn, inputs=inputs: fn(*inputs), inputs))
    return out


def _runner(record: Any) -> Callable[..., Any]:
    """A function calling the record's operation on tensors in place of its KerasTensors."""
    import keras
    from keras import tree

    def run(*xs: Any) -> Any:
        it = iter(xs)
        args, kwargs = tree.map_structure(lambda t: next(it) if isinstance(t, keras.KerasTensor) else t,
                                          (record.args, record.kwargs))
        return _reduce_first(tree.flatten(record.operation(*args, **kwargs))[0])

    return run


def _random_input(shape: tuple[int, ...], dtype: str, seed: list[int]) -> Any:
    import tensorflow as tf

    if "float" in str(dtype):
        return tf.cast(tf.random.stateless_normal(shape, seed=seed), dtype)
    if str(dtype) == "bool":
        return tf.ones(shape, tf.bool)
    return tf.zeros(shape, dtype)


def layer_points(name: str, model: Any, batch: int, *, warmup: int, repeats: int,
                 probe: PeakProbe | None = None, input_shape: Sequence[int] | None = None) -> list[Point]:
    """Every call in ``model`` timed alone, all round robin, keyed by the call's unique name; FLOPs from the
    counts, bytes from shapes (a shared layer's weights on each of its calls: each call reads them)."""
    import tensorflow as tf

    from tfbench import timing

    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # one small tf.function per layer is the point, not a retracing bug
    try:
        work = layer_workloads(model, batch, input_shape=input_shape)
        cases = {record.name: call for record, _, call, _ in work}
        cases.update(probe.cases() if probe else {})
        timings = {t.case: t for t in timing.compare(cases, warmup=warmup, repeats=repeats)}
    finally:
        tf.get_logger().setLevel(level)
    if probe:
        probe.take(timings, name)
    points = []
    for record, count, _, inputs in work:
        weights = sum(int(math.prod(int(d) for d in w.shape)) for w in getattr(record.operation, "weights", []))
        in_elements = sum(int(x.shape.num_elements()) for x in inputs)
        out_elements = batch * math.prod(map(int, count.output_shape))
        t = timings[record.name]
        points.append(Point(name, record.name, count.kind, batch * (count.mults + count.adds),
                            BYTES_F32 * (in_elements + out_elements + weights), t.median_ms, t.p10_ms, t.p90_ms))
    return points


COLOURS = {"vgg19": "tab:blue", "resnet50": "tab:green", "lenet5": "tab:purple", "fusion": "tab:red",
           "model": "black"}


def plot(points: Sequence[Point], peaks: dict[str, Any], path: Path, title: str) -> Path:
    """Draw the roofline (float32 and bfloat16 ceilings, bandwidth slope) and the points; write a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    bw, f32, b16 = peaks["bandwidth_gb_per_s"], peaks["float32_gflops"], peaks["bfloat16_gflops"]
    placed = [p for p in points if p.flops > 0 and p.median_ms > 0]
    lo = min([p.intensity for p in placed] + [0.05]) / 2
    hi = max([p.intensity for p in placed] + [4 * b16 / bw]) * 2
    ai = np.logspace(np.log10(lo), np.log10(hi), 200)
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=100)
    ax.loglog(ai, np.minimum(f32, ai * bw), "k-", lw=2, label=f"float32 roof: {f32:.0f} GFLOP/s, {bw:.1f} GB/s")
    ax.loglog(ai, np.minimum(b16, ai * bw), "k--", lw=1.2, label=f"bfloat16 matmul roof: {b16:.0f} GFLOP/s")
    ax.axvline(f32 / bw, color="grey", lw=0.8, ls=":")
    ax.text(f32 / bw, f32 * 1.15, f" ridge {f32 / bw:.1f} FLOP/byte", fontsize=8, color="grey")
    for index, group in enumerate(dict.fromkeys([*COLOURS, *(p.group for p in placed)])):
        mine = [p for p in placed if p.group == group]
        if not mine:
            continue
        if group == "fusion":
            for before, after in zip(mine[0::2], mine[1::2]):
                ax.annotate("", (after.intensity, after.gflops * after.load_scale),
                            (before.intensity, before.gflops * before.load_scale),
                            arrowprops={"arrowstyle": "->", "color": COLOURS[group]})
        ax.scatter([p.intensity for p in mine], [p.gflops * p.load_scale for p in mine],
                   s=28 if group != "model" else 60,
                   c=COLOURS.get(group, f"C{index % 10}"), marker="*" if group == "model" else "o", alpha=0.8,
                   label=group)
    for i, p in enumerate(q for q in placed if q.group in ("fusion", "model")):
        ax.annotate(p.name, (p.intensity, p.gflops * p.load_scale), fontsize=6.5, xytext=(5, -9 + 9 * (i % 3)),
                    textcoords="offset points")
    ax.set_xlabel("arithmetic intensity (FLOP / byte, float32 bytes moved at least once)")
    ax.set_ylabel("achieved GFLOP/s x (best peak / peak in its own rounds)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def below_roof(rows: Sequence[dict[str, Any]], top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` rows that do arithmetic furthest below their roofline bound (smallest fraction of the bound)."""
    return sorted((r for r in rows if r["flops"] > 0 and r["median_ms"] > 0), key=lambda r: r["of_bound"])[:top]


def model_roofline(name: str, keras_model: Any, call: Callable[[Any], Any], x: Any, whole_flops: int,
                   whole_bytes: int, *, warmup: int = 1, repeats: int = 3, matmul_size: int = 1024,
                   add_elements: int = 1 << 23, input_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """Peaks measured in the same rounds as the points; every layer of a Keras model, or the whole model.

    A Keras model's layers are timed alone (:func:`layer_points`); any other model is one point,
    its FLOPs ``whole_flops`` and bytes ``whole_bytes`` (given by the caller, for the whole batch).
    Returns the peaks, the rows (:meth:`Point.row` against the peaks of the same rounds) and the points.
    """
    import tensorflow as tf

    from tfbench import timing

    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # the probe's and each layer's own tf.function: retracing is the point
    try:
        probe = PeakProbe(matmul_size, add_elements)
        if keras_model is not None:
            points = layer_points(name, keras_model, int(x.shape[0]), warmup=warmup, repeats=repeats, probe=probe,
                                  input_shape=input_shape)
        else:
            fn = tf.function(lambda t: _reduce_first(call(t)))
            cases = {name: lambda: fn(x), **probe.cases()}
            timings = {t.case: t for t in timing.compare(cases, warmup=warmup, repeats=repeats)}
            probe.take(timings, name)
            t = timings[name]
            points = [Point(name, name, "whole model", whole_flops, whole_bytes, t.median_ms, t.p10_ms, t.p90_ms)]
    finally:
        tf.get_logger().setLevel(level)
    peaks = probe.peaks()
    own = probe.samples[-1]
    rows = [p.row(own["float32_gflops"], own["bandwidth_gb_per_s"]) for p in points]
    return {"peaks": peaks, "rows": rows, "points": points}
