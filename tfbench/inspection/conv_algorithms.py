"""The convolution benchmark's library: every TfbenchConv2D algorithm against TensorFlow's kernels.

The measuring half of ``python -m tfbench.conv`` (course exercises 5.7 and 6.11).  For each conv
layer shape of a model (VGG19 and LeNet-5 by default, or the user's model through the one loader,
:func:`tfbench.models.load`), at each batch size, it times side by side, round robin
(:func:`tfbench.timing.compare`):

- every algorithm of :mod:`tfbench.operators.conv2d` (``loops`` only where one call stays under a
  limit: it runs at well under 1 GFLOP/s, so it is timed alone, once, after the others);
- ``tf.nn.conv2d`` as this process runs it (oneDNN where TensorFlow turns it on, else Eigen);
- the matmul and bandwidth peaks of :class:`tfbench.inspection.roofline.PeakProbe`, in the same
  rounds, so a fraction of the peak compares numbers taken under the same load;

and, in a child process with ``TF_ENABLE_ONEDNN_OPTS=0``, ``tf.nn.conv2d`` on Eigen (oneDNN cannot
be switched off once TensorFlow has started).  Per row: the median, GFLOP/s, the fraction of the
float32 matmul peak, the speed relative to oneDNN, a roofline point (FLOPs over the bytes that must
move at least once) and the multiplications the algorithm performs (Winograd's are counted from
its tiles: 16 per 4x4 tile and channel pair, plus 14 per filter for the filter transform; the
ratio to the direct count is checked against 36/16 = 2.25).  Cache misses come from ``perf stat``
attached to this process while a case runs, where the kernel lets ``perf`` read the hardware
counters; where not (virtual machines often do not), the rows say why.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tfbench import timing
from tfbench.inspection.roofline import BYTES_F32, PeakProbe, Point
from tfbench.models.counting import flat_layers
from tfbench.operators import conv2d as conv
from tfbench.plumbing.errors import UserError

DEFAULT_MODELS = ("vgg19", "lenet5")
WINOGRAD_SAVING = 36 / 16  # direct multiplications / Winograd's, per 2x2 output block and channel pair
PERF_EVENTS = ("cache-references", "cache-misses", "L1-dcache-load-misses")


@dataclass(frozen=True)
class ConvCase:
    """One conv layer shape at one batch size; ``layers`` lists the layers of the model that have it."""

    model: str
    layers: tuple[str, ...]
    input_shape: tuple[int, int, int, int]  # NHWC
    filter_shape: tuple[int, int, int, int]  # HWIO
    strides: tuple[int, int]
    padding: str

    @property
    def batch(self) -> int:
        return self.input_shape[0]

    @property
    def output_hw(self) -> tuple[int, int]:
        return tuple(conv.same_padding(size, k, s, self.padding)[0]  # type: ignore[return-value]
                     for size, k, s in zip(self.input_shape[1:3], self.filter_shape[:2], self.strides))

    @property
    def label(self) -> str:
        """``conv3_1 b1 56x56x128->256 3x3/1 SAME`` (the first layer, then ``+2`` for two more alike)."""
        n, h, w, c = self.input_shape
        more = f"+{len(self.layers) - 1}" if len(self.layers) > 1 else ""
        return (f"{self.layers[0]}{more} b{n} {h}x{w}x{c}->{self.filter_shape[3]} "
                f"{self.filter_shape[0]}x{self.filter_shape[1]}/{self.strides[0]} {self.padding}")

    def direct_multiplications(self) -> int:
        oh, ow = self.output_hw
        kh, kw, c, k = self.filter_shape
        return self.batch * oh * ow * k * kh * kw * c

    @property
    def flops(self) -> int:
        """2 x the direct multiply-adds: the work, whatever the algorithm does."""
        return 2 * self.direct_multiplications()

    @property
    def bytes(self) -> int:
        """float32 bytes that must move at least once: input, filter, output."""
        oh, ow = self.output_hw
        n, h, w, c = self.input_shape
        kh, kw, _, k = self.filter_shape
        return BYTES_F32 * (n * h * w * c + kh * kw * c * k + n * oh * ow * k)

    def applies(self, algorithm: str) -> bool:
        """Whether ``algorithm`` computes this shape (Winograd F(2x2,3x3): 3x3 filters, stride 1)."""
        return algorithm != "winograd" or (self.filter_shape[:2] == (3, 3) and self.strides == (1, 1))


def multiplications(case: ConvCase, algorithm: str) -> int:
    """The multiplications ``algorithm`` performs on ``case`` (Winograd counted from its tiles)."""
    if algorithm != "winograd":
        return case.direct_multiplications()
    oh, ow = case.output_hw
    _, _, c, k = case.filter_shape
    tiles = case.batch * math.ceil(oh / 2) * math.ceil(ow / 2)
    return tiles * 16 * c * k + 14 * c * k  # elementwise products, and the halvings of G g G^T


def cases_from_model(name: str, model: Any, batch: int) -> tuple[list[ConvCase], list[str]]:
    """The distinct conv shapes of a Keras model at ``batch``, and a note per conv layer left out (and why)."""
    import keras

    found: dict[tuple, list[str]] = {}
    skipped: list[str] = []
    for layer in flat_layers(model):
        if not isinstance(layer, keras.layers.Conv2D) or type(layer).__name__ != "Conv2D":
            continue
        if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1:
            skipped.append(f"{layer.name}: data_format {layer.data_format}, dilation {tuple(layer.dilation_rate)}, "
                           f"groups {layer.groups} (TfbenchConv2D: channels_last, dilation 1, groups 1)")
            continue
        shape = tuple(layer.input.shape)
        if len(shape) != 4 or None in shape[1:]:
            skipped.append(f"{layer.name}: input shape {shape} is not fully known")
            continue
        key = ((batch, *shape[1:]), tuple(layer.kernel.shape), tuple(layer.strides), layer.padding.upper())
        found.setdefault(key, []).append(layer.name)
    cases = [ConvCase(name, tuple(names), *key) for key, names in found.items()]  # type: ignore[arg-type]
    return cases, skipped


def load_cases(refs: Sequence[str], batches: Sequence[int], *, allow_code: bool = False,
               input_shape: Sequence[int] | None = None) -> tuple[list[ConvCase], list[str]]:
    """The conv shapes of each model (registry name, file or factory, through the one loader) at each batch."""
    from tfbench.models import load

    cases: list[ConvCase] = []
    notes: list[str] = []
    for ref in refs:
        loaded = load.load(ref, allow_code=allow_code, input_shape=input_shape)
        if loaded.keras_model is None:
            raise UserError(f"{ref}: a {loaded.source} model has no Keras layers to read the convolutions from; "
                            "pass a .keras or .h5 file, a registry name or a factory returning a Keras model")
        for batch in batches:
            found, skipped = cases_from_model(loaded.name, loaded.keras_model, batch)
            cases += found
            notes += [f"{loaded.name}: {s}" for s in skipped] if batch == batches[0] else []
        if not any(c.model == loaded.name for c in cases):
            notes.append(f"{loaded.name}: no Conv2D layer that TfbenchConv2D computes")
    return cases, notes


# ----------------------------------------------------------------------------------------------- timing


def _inputs(case: ConvCase, seed: int = 0) -> tuple[Any, Any]:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.input_shape, dtype=np.float32)
    w = rng.standard_normal(case.filter_shape, dtype=np.float32)
    w /= np.float32(math.sqrt(max(1, math.prod(case.filter_shape[:3]))))
    return tf.constant(x), tf.constant(w)


def case_functions(case: ConvCase, algorithms: Sequence[str], reference: str) -> dict[str, Callable[[], Any]]:
    """One ``tf.function`` per algorithm (and the reference ``tf.nn.conv2d``), each returning one element."""
    import tensorflow as tf

    x, w = _inputs(case)
    strides, padding = list(case.strides), case.padding

    def first(y: tf.Tensor) -> tf.Tensor:  # the whole output is computed; only one element is copied back
        return tf.reshape(y, [-1])[0]

    fns: dict[str, Callable[[], Any]] = {}
    for algorithm in algorithms:
        f = tf.function(lambda a, b, alg=algorithm: first(conv.conv2d(a, b, strides, padding, algorithm=alg,
                                                                      backend="cpp")))
        f.get_concrete_function(x, w)  # traced now: no call below, timed or not, includes tracing
        fns[algorithm] = lambda f=f: f(x, w)
    ref = tf.function(lambda a, b: first(tf.nn.conv2d(a, b, strides, padding)))
    ref.get_concrete_function(x, w)
    fns[reference] = lambda: ref(x, w)
    return fns


def perf_status() -> str:
    """``"ok"`` when ``perf stat`` can count cache misses here, else why not (one line)."""
    perf = shutil.which("perf")
    if perf is None:
        return "perf is not installed"
    try:
        out = subprocess.run([perf, "stat", "-x,", "-e", ",".join(PERF_EVENTS), "--", "true"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return f"perf failed to run: {err}"
    if "<not supported>" in out.stderr:
        return "perf runs, but this machine does not expose the cache-miss counters (<not supported>: a VM?)"
    if out.returncode != 0:
        return f"perf stat failed: {(out.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    return "ok"


def perf_counts(fn: Callable[[], Any], calls: int) -> dict[str, float]:
    """Cache events per call of ``fn``: ``perf stat`` attached to this process while ``fn`` runs ``calls`` times."""
    with tempfile.NamedTemporaryFile("r", suffix=".perf") as out:
        proc = subprocess.Popen(["perf", "stat", "-x,", "-e", ",".join(PERF_EVENTS), "-o", out.name,
                                 "-p", str(os.getpid())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # perf attaches
        for _ in range(calls):
            timing.block(fn())
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        counts = {}
        for line in Path(out.name).read_text().splitlines():
            parts = line.split(",")
            if len(parts) > 2 and parts[2] in PERF_EVENTS and parts[0].replace(".", "").isdigit():
                counts[parts[2]] = float(parts[0]) / calls
    return counts


def time_case(case: ConvCase, algorithms: Sequence[str], *, reference: str, warmup: int, repeats: int,
              probe: PeakProbe, loops_limit_gflop: float, perf: bool) -> tuple[dict[str, timing.Timing], dict, dict]:
    """Time ``case``: the fast algorithms, the reference and the peaks round robin; ``loops`` alone.

    Returns (timings by algorithm, the peaks of these rounds, perf counts by algorithm).
    """
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per case and algorithm: the retracing warnings are noise
    fast = [a for a in algorithms if a != "loops" and case.applies(a)]
    fns = case_functions(case, fast + (["loops"] if "loops" in algorithms else []), reference)
    loops_fn = fns.pop("loops", None)
    timings = {t.case: t for t in timing.compare({**fns, **probe.cases()}, warmup=warmup, repeats=repeats)}
    rates = probe.take(timings, case.label)
    if loops_fn is not None and case.flops / 1e9 <= loops_limit_gflop:
        timings["loops"] = timing.measure("loops", loops_fn, warmup=0, repeats=1)
    counts: dict[str, dict[str, float]] = {}
    if perf:
        for name, fn in fns.items():
            counts[name] = perf_counts(fn, max(1, min(repeats, 3)))
    return timings, rates, counts


def eigen_timings(cases: Sequence[ConvCase], *, warmup: int, repeats: int) -> dict[str, dict[str, float]]:
    """``tf.nn.conv2d`` on Eigen for each case: a child process with ``TF_ENABLE_ONEDNN_OPTS=0``."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "cases.json", Path(tmp) / "timings.json"
        src.write_text(json.dumps({"cases": [asdict(c) for c in cases], "warmup": warmup, "repeats": repeats}))
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}
        result = subprocess.run([sys.executable, "-m", "tfbench.conv", "--eigen-worker", str(src), str(dst)], env=env,
                                capture_output=True, text=True)
        if result.returncode != 0 or not dst.exists():
            raise UserError(f"the Eigen child process failed (exit {result.returncode}): "
                            f"{(result.stderr.strip().splitlines() or ['no output'])[-1][:300]}")
        return json.loads(dst.read_text())


def eigen_worker(src: Path, dst: Path) -> None:
    """The child of :func:`eigen_timings`: time ``tf.nn.conv2d`` on each case, write the medians as JSON."""
    spec = json.loads(src.read_text())
    out: dict[str, dict[str, float]] = {}
    onednn, why = timing.onednn_state(timing.cpuinfo()[1])
    for raw in spec["cases"]:
        case = ConvCase(raw["model"], tuple(raw["layers"]), tuple(raw["input_shape"]), tuple(raw["filter_shape"]),
                        tuple(raw["strides"]), raw["padding"])
        fn = case_functions(case, [], "eigen")["eigen"]
        t = timing.measure("eigen", fn, warmup=spec["warmup"], repeats=spec["repeats"])
        out[case.label] = {"median_ms": t.median_ms, "p10_ms": t.p10_ms, "p90_ms": t.p90_ms, "onednn": onednn}
    dst.write_text(json.dumps({"timings": out, "onednn": onednn, "why": why}))


# ------------------------------------------------------------------------------------------------- rows


def rows_for_case(case: ConvCase, timings: dict[str, timing.Timing], rates: dict[str, float],
                  counts: dict[str, dict[str, float]], reference: str, eigen: dict[str, float] | None,
                  perf_note: str) -> tuple[list[dict[str, Any]], list[Point]]:
    """The table rows and roofline points of one case, each against the peaks of its own rounds."""
    peak, bandwidth = rates["float32_gflops"], rates["bandwidth_gb_per_s"]
    ref_ms = timings[reference].median_ms
    entries = [(name, t.median_ms, t.p10_ms, t.p90_ms, t.repeats) for name, t in timings.items()]
    if eigen is not None:
        entries.append(("tf.nn.conv2d (Eigen, child)", eigen["median_ms"], eigen["p10_ms"], eigen["p90_ms"], 0))
    rows, points = [], []
    for name, median, p10, p90, repeats in entries:
        algorithm = name if name in conv.ALGORITHMS else "direct"
        mults = multiplications(case, algorithm)
        point = Point(_group(name), f"{case.label} {name}", name, case.flops, case.bytes, median, p10, p90)
        row = {"case": case.label, "model": case.model, "layers": ",".join(case.layers), "batch": case.batch,
               "algorithm": name, "median_ms": median, "p10_ms": p10, "p90_ms": p90, "repeats": repeats,
               "gflops": point.gflops, "of_matmul_peak": point.gflops / peak, "speed_vs_reference": ref_ms / median,
               "multiplications": mults, "direct_per_mult": case.direct_multiplications() / mults,
               "intensity": point.intensity,
               "roofline_bound_gflops": min(peak, point.intensity * bandwidth),
               "peak_gflops_same_rounds": peak}
        if name in counts and counts[name]:
            row.update({f"{event}_per_call": value for event, value in counts[name].items()})
        elif name in conv.ALGORITHMS or name == reference:
            row["cache_misses"] = perf_note if perf_note != "ok" else "not measured"
        rows.append(row)
        points.append(point)
    return rows, points


def _group(name: str) -> str:
    """The roofline picture's legend entry: the algorithm, or which library ran tf.nn.conv2d."""
    if name in conv.ALGORITHMS:
        return name
    return "tf Eigen" if "Eigen" in name else "tf oneDNN" if "oneDNN" in name else "tf.nn.conv2d"


def summary(rows: Sequence[dict[str, Any]], reference: str) -> tuple[dict[str, float], list[str]]:
    """The ratios the benchmark's targets are about, and one line per check."""
    ratios: dict[str, float] = {}
    lines: list[str] = []
    by_case: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["algorithm"]] = row
    for label, algs in by_case.items():
        ours = {a: r for a, r in algs.items() if a in conv.ALGORITHMS and a != "loops"}
        if ours and reference in algs:
            best = min(ours.values(), key=lambda r: r["median_ms"])
            ratio = algs[reference]["median_ms"] / best["median_ms"]
            ratios[f"best/oneDNN {label}"] = ratio
            lines.append(f"{label}: best tfbench algorithm {best['algorithm']} at {ratio:.2f}x the speed of "
                         f"{reference}")
        if "loops" in algs:
            for tiling in conv.TILINGS:
                if tiling in algs:
                    speedup = algs["loops"]["median_ms"] / algs[tiling]["median_ms"]
                    ratios[f"{tiling}/loops {label}"] = speedup
                    lines.append(f"{label}: {tiling} {speedup:.1f}x faster than the loop nest")
        if "winograd" in algs and algs["winograd"]["direct_per_mult"] > 0:
            ratios[f"winograd multiplications saved {label}"] = algs["winograd"]["direct_per_mult"]
    return ratios, lines


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table as markdown (for TensorBoard's Text dashboard and the docs)."""
    head = "| case | algorithm | median ms | GFLOP/s | of matmul peak | speed vs reference | mults (direct/x) |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['algorithm']} | {r['median_ms']:.3g} | {r['gflops']:.1f} | "
                     f"{r['of_matmul_peak']:.2f} | {r['speed_vs_reference']:.2f} | {r['direct_per_mult']:.2f} |")
    return "\n".join(lines)
