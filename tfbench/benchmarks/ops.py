"""``python -m tfbench.bench ops``: PowerDifference (C++) vs ``tf.pow(x - y, p)`` vs NumPy.

Cases: 1e6 and 1e7 float32 elements, without broadcasting (x and y of shape [n]) and with it
(x [n/1000, 1000] minus y [1000]), forward only and forward + backward (gradients of x, y and
p through a GradientTape), with 1 and 2 intra-op threads.  The TensorFlow cases run as
``tf.function`` graphs; NumPy (forward only, single-threaded) is the baseline.

``tf.config.threading`` can only be set before TensorFlow initialises its runtime, so each
thread count runs in its own worker process (``python -m tfbench.bench ops --worker``); the
parent collects the rows and computes the ratios:
- ``cpp/composite``: C++ op time over composite time, same case and thread count (target <= 1.0);
- ``speedup 2 threads``: time with 1 thread over time with 2 (target > 1.0).
Each row also has ``cpu_ms``, the process CPU time per call (all threads), ``cpu_per_wall``,
and ``busy_threads``, how many threads of the process did at least 30% of the busiest one's
work (from /proc/self/task, 10 ms resolution; the main thread that copies results counts
when it is busy).  On a shared, busy machine wall times say little; these still show whether
the work was split across the thread pool.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from tfbench import timing
from tfbench.plumbing import cli
from tfbench.plumbing.errors import UserError
from tfbench.plumbing.files import write_json

POW = 2.5  # fractional, so nobody takes a squaring shortcut


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--sizes must be comma-separated numbers like 1e6,1e7, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise UserError(f"--sizes must be positive, got {text!r}")
    return sizes


def _parse_threads(text: str) -> list[int]:
    try:
        threads = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--threads must be comma-separated integers like 1,2, got {text!r}") from None
    if not threads or min(threads) < 1:
        raise UserError(f"--threads must be at least 1, got {text!r}")
    return threads


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = cli.parser(prog, __doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e6,1e7", help="element counts, comma-separated")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts, one worker process each")
    cli.add_repeats(parser, 10, help="timed calls per case")
    parser.add_argument("--warmup", type=cli.non_negative_int, default=2, help="untimed calls per case")
    cli.add_logdir(parser, help="JSON goes to LOGDIR/bench/ops-<ts>.json")
    cli.add_verbose(parser)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--numpy", action="store_true", help=argparse.SUPPRESS)
    return parser


def _shapes(size: int, broadcast: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if not broadcast:
        return (size,), (size,)
    cols = 1000 if size % 1000 == 0 else size
    return (size // cols, cols), (cols,)


def _thread_ticks() -> dict[str, int]:
    """CPU clock ticks (user + system) used so far by each thread of this process (Linux /proc)."""
    ticks = {}
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else []:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        ticks[tid] = int(fields[11]) + int(fields[12])
    return ticks


def busy_threads(before: dict[str, int], after: dict[str, int]) -> int | None:
    """How many threads did real work between two snapshots (at least 30% of the busiest one's CPU)."""
    deltas = [after[t] - before.get(t, 0) for t in after]
    if not deltas or max(deltas) <= 0:
        return None
    return sum(d >= 0.3 * max(deltas) for d in deltas)


def worker(sizes: Sequence[int], threads: int, repeats: int, warmup: int, with_numpy: bool) -> list[dict[str, Any]]:
    """Time every case with ``threads`` intra-op threads; must run before TF initialises."""
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from tfbench.operators.power_difference import power_difference, resolve_backend

    backend = resolve_backend("auto")  # cpp here; the fallback (with a warning) if it cannot be built

    def forward(fn: Any) -> Any:
        return tf.function(lambda x, y, p: fn(x, y, p))

    def forward_backward(fn: Any) -> Any:
        @tf.function
        def step(x: tf.Tensor, y: tf.Tensor, p: tf.Tensor) -> Any:
            with tf.GradientTape() as tape:
                tape.watch([x, y, p])
                z = fn(x, y, p)
            return z, tape.gradient(z, [x, y, p])

        return step

    impls = {f"PowerDifference ({backend})": lambda x, y, p: power_difference(x, y, p, backend=backend),
             "composite tf.pow(x - y, p)": lambda x, y, p: tf.pow(x - y, p)}
    rng = np.random.default_rng(0)
    plan = []
    for size in sizes:
        for broadcast in (False, True):
            x_shape, y_shape = _shapes(size, broadcast)
            xn = rng.uniform(1.5, 3.0, size=x_shape).astype(np.float32)
            yn = rng.uniform(0.0, 1.0, size=y_shape).astype(np.float32)
            x, y, p = tf.constant(xn), tf.constant(yn), tf.constant(POW, tf.float32)
            common = {"size": size, "broadcast": "rows" if broadcast else "none", "threads": threads}
            for impl, fn in impls.items():
                plan.append((dict(impl=impl, mode="forward", **common), forward(fn), (x, y, p)))
                plan.append((dict(impl=impl, mode="forward+backward", **common), forward_backward(fn), (x, y, p)))
            if with_numpy:
                pn = np.float32(POW)
                plan.append((dict(impl="NumPy np.power(x - y, p)", mode="forward", **{**common, "threads": 1}),
                             lambda xn=xn, yn=yn: np.power(xn - yn, pn), None))
    rows = []
    for columns, fn, args in tqdm(plan, desc=f"ops bench, {threads} thread(s)", disable=None):
        call = (lambda fn=fn, args=args: fn(*args)) if args is not None else fn
        case = (f"{columns['impl']} {columns['mode']} n={columns['size']:.0e} "
                f"bcast={columns['broadcast']} t={columns['threads']}")
        for _ in range(warmup):  # untimed: tracing, first allocations
            timing.block(call())
        cpu_start, ticks_start = time.process_time(), _thread_ticks()
        result = timing.measure(case, call, warmup=0, repeats=repeats, **columns)
        cpu_ms = (time.process_time() - cpu_start) * 1e3 / repeats
        result.extra["busy_threads"] = busy_threads(ticks_start, _thread_ticks())
        result.extra["gelem_per_s"] = columns["size"] / (result.median_ms * 1e6)
        # CPU time of all threads per call: on a busy machine the wall time says little,
        # cpu_ms / median_ms > 1 still shows that several threads worked at once.
        result.extra["cpu_ms"] = cpu_ms
        result.extra["cpu_per_wall"] = cpu_ms / result.median_ms
        rows.append(result.row())
    return rows


def ratios_from(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """cpp/composite per case and thread count; 1-thread over 2-thread time per C++ case."""
    index = {(r["impl"].split(" ")[0], r["mode"], r["size"], r["broadcast"], r["threads"]): r["median_ms"]
             for r in rows}
    cpu = {(r["impl"].split(" ")[0], r["mode"], r["size"], r["broadcast"], r["threads"]): r.get("cpu_ms") for r in rows}
    ratios: dict[str, float] = {}
    for (impl, mode, size, bcast, threads), ms in index.items():
        label = f"{mode} n={size:.0e} bcast={bcast}"
        if impl == "PowerDifference":
            composite = index.get(("composite", mode, size, bcast, threads))
            if composite:
                ratios[f"cpp/composite {label} t={threads}"] = ms / composite
            cpu_composite = cpu.get(("composite", mode, size, bcast, threads))
            cpu_ours = cpu[(impl, mode, size, bcast, threads)]
            if cpu_composite and cpu_ours:  # CPU time: the work done, robust to a busy machine
                ratios[f"cpu time cpp/composite {label} t={threads}"] = cpu_ours / cpu_composite
            if threads == 1 and (two := index.get((impl, mode, size, bcast, 2))):
                ratios[f"speedup 2 threads, cpp {label}"] = ms / two
    return ratios


def run_benchmark(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one worker process per thread count, then report rows and ratios (JSON in logs/bench/)."""
    ns = cli.parse(_parser("bench ops"), argv)
    if ns.worker:  # one thread count, in a process of its own (started below: threads are fixed at TF start-up)
        cli.quiet_tensorflow(ns.verbose)
        rows = worker(_parse_sizes(ns.sizes), _parse_threads(ns.threads)[0], ns.repeats, ns.warmup, ns.numpy)
        write_json(Path(ns.out), rows)
        return {"rows": rows}
    _parse_sizes(ns.sizes)  # checked here, parsed again by each worker
    threads = _parse_threads(ns.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, n in enumerate(threads):
            out = Path(tmp) / f"rows-{n}.json"
            cmd = [sys.executable, "-m", "tfbench.bench", "ops", "--worker", "--threads", str(n), "--sizes", ns.sizes,
                   "--repeats", str(ns.repeats), "--warmup", str(ns.warmup), "--out", str(out)]
            if i == 0:
                cmd.append("--numpy")  # NumPy is single-threaded: measure it once
            result = subprocess.run(cmd, env=os.environ.copy())
            if result.returncode != 0:
                raise RuntimeError(f"benchmark worker for {n} thread(s) failed with exit code {result.returncode}")
            rows += json.loads(out.read_text())
    return timing.report("ops", rows, ratios_from(rows), logdir=ns.logdir,
                        extra={"pow": POW, "dtype": "float32", "threads": threads,
                               "note": "one worker process per thread count "
                                       "(tf.config.threading is fixed at TF start-up)"})

