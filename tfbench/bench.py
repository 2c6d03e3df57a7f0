"""The timing harness every benchmark uses, and ``python -m tfbench.bench <name>``.

Rules it enforces (see the README's "Benchmarks" section):
- warm-up calls run first and are not timed (they trace, compile and fill caches);
- every timed call blocks until its result exists (tensors are copied to NumPy), so
  asynchronous execution cannot make a call look faster than it is;
- we report the median (and p10/p90) of repeated runs, and ratios measured side by side
  in the same process, never against numbers from another day;
- each run writes one JSON report to ``logs/bench/<name>-<timestamp>.json``:
  ``{"bench", "device", "cpu", "cpu_flags", "onednn", "onednn_reason", "intra_op_threads",
  "inter_op_threads", "tf_version", "keras_version", "python", "rows": [...], "ratios": {...}}``;
- every benchmark prints the machine header first (:func:`machine_header`): CPU model, the
  flags that decide kernels, oneDNN on/off and why, threads, versions.

Benchmarks live in the module of their experiment as ``run_benchmark(argv) -> dict``;
this module only dispatches to them by name.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tfbench import cli, paths
from tfbench.errors import UserError, run_cli
from tfbench.files import write_json

# name -> (module with run_benchmark(argv), one-line description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "matmul": ("tfbench.matmul", "tf.matmul on every device, eager vs tf.function, GFLOP/s (ex. 4.3, 5.1, 5.2)"),
    "vgg": ("tfbench.vgg_graph", "VGG19 forward: eager vs tf.function vs XLA"),
    "pipeline": ("tfbench.pipeline_bench", "ImageNet TFRecord input pipeline vs decode-only vs a naive loop"),
    "lenet": ("tfbench.lenet", "LeNet-5 training step: eager vs tf.function vs fit"),
    "classic": ("tfbench.classic", "kNN prediction on the test digits: TensorFlow vs scikit-learn's brute force"),
    "ops": ("tfbench.ops.bench", "PowerDifference C++ op vs composite TF vs NumPy"),
    "norms": ("tfbench.ops.norm_bench", "fused InstanceNorm and PowerDifference at the transform net's shapes"),
    "fusion": ("tfbench.fusion", "fused vs unfused ops: remapper, BN folding, XLA"),
    "mixed_precision": ("tfbench.mixed_precision", "float32 vs mixed_bfloat16 vs mixed_float16 training"),
    "distributed": ("tfbench.distributed.cli", "one device vs mirrored vs multi-worker training"),
    "roofline": ("tfbench.roofline", "matmul peaks, bandwidth, layers and fusion blocks on a roofline (ex. 6.10)"),
    "style": ("tfbench.style_bench", "style transfer: Gatys step vs keras.applications VGG19, transform net's norms"),
}


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


#: CPU flags (as /proc/cpuinfo spells them) that decide which kernels TensorFlow and oneDNN pick.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_bf16", "amx_int8")
#: flags for which TensorFlow (Linux x86) turns oneDNN on by default (``IsMKLEnabled`` in
#: tensorflow/core/util/util.cc: AVX512_VNNI, AVX512_BF16, AVX_VNNI or any AMX feature).
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
#: flags that give native bfloat16 arithmetic to oneDNN's convolutions and matmuls.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo(path: str | Path = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """``(model name, flags)`` of the first processor in /proc/cpuinfo; ("", empty) if unreadable."""
    model, flags = "", set()
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def cpu_name() -> str:
    """The CPU model string (from /proc/cpuinfo on Linux)."""
    return cpuinfo()[0] or platform.processor() or platform.machine()


def onednn_state(flags: set[str], env: str | None = None) -> tuple[bool, str]:
    """Whether TensorFlow runs oneDNN here and why: the ``TF_ENABLE_ONEDNN_OPTS`` setting or its own default.

    ``env`` defaults to the environment's ``TF_ENABLE_ONEDNN_OPTS``.  Mirrors TensorFlow's rule
    (see :data:`ONEDNN_DEFAULT_FLAGS`); :func:`machine_info` also asks TensorFlow itself.
    """
    env = os.environ.get("TF_ENABLE_ONEDNN_OPTS") if env is None else env
    if env is not None and env.strip().lower() in ("1", "true", "0", "false"):
        on = env.strip().lower() in ("1", "true")
        return on, f"TF_ENABLE_ONEDNN_OPTS={env.strip()}"
    found = [f for f in ONEDNN_DEFAULT_FLAGS if f in flags]
    if found:
        return True, f"TensorFlow's default on a CPU with {', '.join(found)}"
    return False, "TensorFlow's default on a CPU without AVX512_VNNI/AVX512_BF16/AVX_VNNI/AMX"


def bf16_note(flags: set[str]) -> str:
    """One line saying whether this CPU can make bfloat16 faster than float32, and why."""
    found = [f for f in BF16_FLAGS if f in flags]
    if found:
        return (f"this CPU has {', '.join(found)}: oneDNN runs bfloat16 convolutions and matmuls natively, so "
                "bfloat16 is faster where large ones dominate (VGG19 at 224x224, batch 8: about 1.9x forward on a "
                "2-core AVX512_BF16 EPYC, docs/precision.md); small layers (LeNet-5, VGG19 at 32x32) are not "
                "faster, often slower: casts and per-op overheads dominate there")
    return ("no bfloat16 speed-up expected on this CPU: it has neither AVX512_BF16 nor AMX_BF16, so "
            "bfloat16 is converted to float32 around every kernel (or runs slower generic code)")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; the machine's count where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model and kernel flags, oneDNN on/off and why,
    threads, device list, TensorFlow/Keras/Python versions."""
    import keras
    import tensorflow as tf

    model, flags = cpuinfo()
    onednn, reason = onednn_state(flags)
    try:
        from tfbench.grappler import onednn_enabled

        reported = onednn_enabled()
        if reported != onednn:
            reason += f" (but TensorFlow reports oneDNN {'on' if reported else 'off'})"
            onednn = reported
    except (ImportError, AttributeError):
        pass
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    cores = usable_cores()
    devices = [d.name for d in tf.config.list_logical_devices()]
    return {
        "device": ", ".join(devices),
        "cpu": model or platform.processor() or platform.machine(),
        "cpu_flags": {f: f in flags for f in KERNEL_FLAGS},
        "cores": cores,
        "onednn": onednn,
        "onednn_reason": reason,
        "intra_op_threads": intra or cores,
        "inter_op_threads": inter or cores,
        "threads_set": {"intra_op": intra, "inter_op": inter},
        "bf16_note": bf16_note(flags),
        "tf_version": tf.__version__,
        "keras_version": keras.__version__,
        "python": platform.python_version(),
    }


def machine_header(info: dict[str, Any] | None = None) -> str:
    """The lines every benchmark prints first: CPU, kernel flags, oneDNN, threads, versions."""
    info = info or machine_info()
    flags = " ".join(f for f, present in info["cpu_flags"].items() if present) or "none of " + ", ".join(KERNEL_FLAGS)
    return "\n".join([
        f"machine: {info['cpu']} ({info['cores']} cores), flags: {flags}",
        f"oneDNN {'on' if info['onednn'] else 'off'} ({info['onednn_reason']}); threads intra-op "
        f"{info['intra_op_threads']}, inter-op {info['inter_op_threads']}; TensorFlow {info['tf_version']}, "
        f"Keras {info['keras_version']}, Python {info['python']}",
        f"bfloat16: {info['bf16_note']}",
    ])


_HEADER_PRINTED: set[str] = set()


def print_header(bench_name: str) -> dict[str, Any]:
    """Print the machine header for a benchmark about to run (once per benchmark and process); return the info."""
    info = machine_info()
    if bench_name not in _HEADER_PRINTED:
        _HEADER_PRINTED.add(bench_name)
        print(f"== {bench_name} ==")
        print(machine_header(info))
    return info


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


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``python -m tfbench.bench NAME [args...]`` to NAME's ``run_benchmark``."""
    parser = argparse.ArgumentParser(
        prog=f"{cli.PROG_PREFIX}bench",
        description="Run a benchmark; each writes JSON under logs/bench/ (NAME --help: its options and defaults).",
        epilog="benchmarks:\n" + "\n".join(f"  {name:16s} {desc}" for name, (_, desc) in BENCHMARKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=list(BENCHMARKS), help="which benchmark")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for that benchmark (see NAME --help)")
    if not list(sys.argv[1:] if argv is None else argv):  # no benchmark named: say which there are
        print(f"usage: {parser.prog} NAME [ARGS ...]  (NAME --help: its options)\n\n{parser.epilog}")
        return 0
    ns = parser.parse_args(argv)
    module_name, _ = BENCHMARKS[ns.name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise UserError(f"benchmark {ns.name!r} is not built yet ({module_name} does not exist)") from err
        raise
    module.run_benchmark(ns.args)  # each parses its arguments first, then prints the machine header
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
