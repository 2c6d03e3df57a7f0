"""``python -m tfbench.bench norms``: the fused InstanceNorm op and PowerDifference at the transform net's shapes.

The transform net (:mod:`tfbench.models.transform_net`, width 16, batch 4 of 128x128 photos)
normalises activations of three shapes: ``[4, 128, 128, 16]`` (2 layers), ``[4, 64, 64, 32]`` (2)
and ``[4, 32, 32, 64]`` (7: the last down-sampling and the residual blocks).  At each shape,
timed side by side (round robin, medians, after untimed warm-ups) as ``tf.function`` graphs:

- **instance norm, forward and forward + backward** (gradients of x, gamma and beta for an upstream
  gradient): TensorFlow's composite (:func:`tfbench.operators.fused_instance_norm.composite`, TensorFlow's
  own gradients) against the fused op with either way of computing the variance (``two_pass``,
  ``welford``).  Goal: the fused op at least 1.5x the composite's speed, forward plus backward;
- **PowerDifference**: ``(x - mean) ** 2`` with the mean per image and channel (the broadcast the
  transform net's PowerDifference norm runs, the kernel's fast path) against ``tf.pow(x - mean, 2)``.
  Goal: at least 1.0x.

``ratios`` holds composite time / fused time (above 1: the fused op is faster) per shape and for the
whole net (each shape's times weighted by how many of the net's norms have it).  JSON under
``logs/bench/norms-<timestamp>.json``.
"""

from __future__ import annotations

from typing import Any, Sequence

from tfbench import timing
from tfbench.plumbing import cli

#: The transform net's normalised shapes at width 16 (channels, and the side as a fraction of the photo's)
#: with how many of its instance norms have each.
NET_SHAPES = ((16, 1, 2), (32, 2, 2), (64, 4, 7))


def shapes(batch: int, size: int, width: int = 16) -> list[tuple[tuple[int, int, int, int], int]]:
    """``[(NHWC shape, norms of the net at it)]`` for photos of ``size`` and a net of ``width``."""
    return [((batch, size // down, size // down, channels * width // 16), count)
            for channels, down, count in NET_SHAPES]


def cases(shape: tuple[int, int, int, int], seed: int = 0) -> dict[str, Any]:
    """The timed calls at one shape: name -> a zero-argument callable returning tensors."""
    import numpy as np
    import tensorflow as tf

    from tfbench.operators import fused_instance_norm as fin
    from tfbench.operators import power_difference as pd

    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(0.5, 2.0, size=shape).astype(np.float32))
    gamma = tf.constant(rng.normal(1.0, 0.1, size=shape[-1]).astype(np.float32))
    beta = tf.constant(rng.normal(0.0, 0.1, size=shape[-1]).astype(np.float32))
    dy = tf.constant(rng.normal(size=shape).astype(np.float32))
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)

    def both(norm: Any) -> Any:
        @tf.function
        def step() -> Any:
            with tf.GradientTape() as tape:
                tape.watch([x, gamma, beta])
                y = norm(x, gamma, beta)
            return y, tape.gradient(y, [x, gamma, beta], output_gradients=dy)

        return step

    norms = {"composite": fin.composite,
             "fused two_pass": lambda *a: fin.instance_norm(*a, variance="two_pass", backend="cpp"),
             "fused welford": lambda *a: fin.instance_norm(*a, variance="welford", backend="cpp")}
    timed: dict[str, Any] = {}
    for name, norm in norms.items():
        timed[f"instance norm {name} forward"] = tf.function(lambda norm=norm: norm(x, gamma, beta))
        timed[f"instance norm {name} forward+backward"] = both(norm)
    timed["PowerDifference (x - mean)^2"] = tf.function(lambda: pd.power_difference(x, mean, 2.0, backend="cpp"))
    timed["tf.pow(x - mean, 2)"] = tf.function(lambda: tf.pow(x - mean, 2.0))
    return timed


def measure(batch: int, size: int, *, width: int = 16, repeats: int = 60,
            warmup: int = 3) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Rows (one per case and shape) and ratios (composite / fused, tf.pow / PowerDifference)."""
    rows: list[dict[str, Any]] = []
    plan = shapes(batch, size, width)
    for shape, count in plan:
        for result in timing.compare(cases(shape), warmup=warmup, repeats=repeats):
            rows.append({**result.row(), "shape": "x".join(map(str, shape)), "norms_in_net": count})
    ratios = _ratios(rows, plan, "median_ms")
    # the fast tail: what load from other processes disturbs least
    ratios.update({f"{name}, p10": value for name, value in _ratios(rows, plan, "p10_ms").items()})
    return rows, ratios


def _ratios(rows: list[dict[str, Any]], plan: list[tuple[tuple[int, int, int, int], int]],
            column: str) -> dict[str, float]:
    """composite / fused per shape and for the net's norms (weighted by count); tf.pow / PowerDifference."""
    by = {(row["case"], row["shape"]): row[column] for row in rows}
    labels = [("x".join(map(str, shape)), count) for shape, count in plan]
    ratios: dict[str, float] = {}
    for mode in ("forward", "forward+backward"):
        composite = f"instance norm composite {mode}"
        for variance in ("two_pass", "welford"):
            fused = f"instance norm fused {variance} {mode}"
            for label, _ in labels:
                ratios[f"composite / fused {variance}, {mode}, {label}"] = by[(composite, label)] / by[(fused, label)]
            ratios[f"composite / fused {variance}, {mode}, the net's norms"] = (
                sum(count * by[(composite, label)] for label, count in labels)
                / sum(count * by[(fused, label)] for label, count in labels))
    for label, _ in labels:
        ratios[f"tf.pow / PowerDifference, {label}"] = (by[("tf.pow(x - mean, 2)", label)]
                                                        / by[("PowerDifference (x - mean)^2", label)])
    return ratios


def goals(ratios: dict[str, float]) -> dict[str, Any]:
    """The two goals, met or not, from :func:`measure`'s ratios of medians."""
    best = max(ratios[f"composite / fused {v}, forward+backward, the net's norms"] for v in ("two_pass", "welford"))
    worst_pow = min(v for k, v in ratios.items() if k.startswith("tf.pow / PowerDifference") and "p10" not in k)
    return {"fused instance norm >= 1.5x the composite, forward+backward, the net's norms": {"reached": best,
                                                                                            "met": best >= 1.5},
            "PowerDifference >= 1.0x tf.pow(x - y, 2), every shape": {"reached": worst_pow, "met": worst_pow >= 1.0}}


def run_benchmark(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse the options, time every case round robin, write the JSON report."""
    parser = cli.parser("bench norms", __doc__.split("\n\n")[0])
    cli.add_batch_size(parser, 4, help="photos per batch")
    parser.add_argument("--image-size", type=cli.positive_int, default=128, help="photo size (a multiple of 4)")
    cli.add_repeats(parser, 60)
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    args = cli.parse(parser, argv)
    if args.image_size % 4:
        from tfbench.plumbing.errors import UserError

        raise UserError(f"--image-size must be a multiple of 4 (the net down-samples twice), got {args.image_size}")
    timing.print_header("norms")
    rows, ratios = measure(args.batch_size, args.image_size, repeats=args.repeats)
    return timing.report("norms", rows, ratios, logdir=args.logdir,
                        extra={"goals": goals(ratios), "batch": args.batch_size, "image_size": args.image_size,
                               "note": "round robin in one process; on a shared machine the spread (p10/p90) "
                                       "says how noisy the medians are"})
