"""Matrix multiplication on every visible device, eagerly and as a graph (exercises 4.3, 5.1, 5.2).

    python -m tfbench.bench matmul [--sizes 256 1024 2048] [--repeats 10]

Exercise 4.3's classic mistake is ``tf.multiply`` (elementwise) where ``tf.matmul`` (an
n x n by n x n product, 2n^3 floating-point operations) was meant; we time the real one.
For each device (every CPU and GPU TensorFlow sees) and size we report the median time of
an eager call and of the same call inside ``tf.function``, and the GFLOP/s both achieve.
For one large matmul the two are nearly equal (the kernel dominates); the graph pays off
when many small ops are chained, because eager execution pays Python and dispatch cost per op.
The ``chain`` case (ten dependent small matmuls) shows that.
"""

from __future__ import annotations

from typing import Sequence

from tfbench.plumbing import cli


def _chain(a, b, steps: int = 10):
    """Ten dependent small matmuls: per-op dispatch cost dominates in eager mode."""
    import tensorflow as tf

    x = a
    for _ in range(steps):
        x = tf.tanh(tf.matmul(x, b))
    return x


def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """Time ``tf.matmul`` eager vs ``tf.function`` for each device and size; write JSON under logs/bench/."""
    parser = cli.parser("bench matmul", "tf.matmul on every device, eager vs tf.function, GFLOP/s.")
    parser.add_argument("--sizes", type=cli.positive_int, nargs="+", default=[256, 1024, 2048],
                        help="square matrix sizes")
    parser.add_argument("--chain-size", type=cli.positive_int, default=64,
                        help="matrix size of the 10-matmul chain case")
    cli.add_repeats(parser, 10)
    parser.add_argument("--warmup", type=cli.non_negative_int, default=2, help="untimed calls per case")
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    args = cli.parse(parser, argv)

    import tensorflow as tf

    from tfbench import timing

    rows, ratios = [], {}
    devices = [d.name for d in tf.config.list_logical_devices() if d.device_type in ("CPU", "GPU")]
    cases = [("matmul", n, tf.matmul, 2.0 * n**3) for n in args.sizes]
    cases.append(("chain of 10 matmul+tanh", args.chain_size, _chain, 10 * 2.0 * args.chain_size**3))
    for device in devices:
        for label, n, fn, flops in cases:
            with tf.device(device):
                a = tf.random.stateless_normal([n, n], seed=[1, 2])
                b = tf.random.stateless_normal([n, n], seed=[3, 4]) / n**0.5
                timings = timing.compare({"eager": lambda: fn(a, b), "tf.function": lambda g=tf.function(fn): g(a, b)},
                                        warmup=args.warmup, repeats=args.repeats, device=device, size=n)
            for result in timings:
                result.extra["mode"] = result.case
                result.extra["gflops"] = flops / (result.median_ms * 1e-3) / 1e9
                result.case = f"{label} {n} {result.case} on {device}"
            rows += timings
            medians = {t.extra["mode"]: t.median_ms for t in timings}
            ratios[f"{label} {n} on {device}: tf.function speedup"] = medians["eager"] / medians["tf.function"]
    return timing.report("matmul", rows, ratios, logdir=args.logdir)
