"""``python -m tfbench.conv``: the convolution opened up, every algorithm timed against oneDNN and Eigen.

Course exercises 5.7 (how TensorFlow's CPU kernel computes a convolution) and 6.11 (the loop nest
and its tilings, as code).  Every conv layer shape of VGG19 and LeNet-5 (or of MODEL: a registry
name, a .keras / .h5 file, or package.module:factory with --allow-code), at each batch size, computed
by each algorithm of the C++ op TfbenchConv2D (loops, tile_oc, tile_plane, tile_ic, im2col,
winograd; tfbench/operators/conv2d.py) and by tf.nn.conv2d: oneDNN in this process where TensorFlow turns
it on, Eigen in a child process with TF_ENABLE_ONEDNN_OPTS=0.  Prints the schedules (tile sizes from
this machine's caches), then a table: median time (round robin), GFLOP/s, fraction of the float32
matmul peak measured in the same rounds, speed relative to oneDNN, multiplications (Winograd's
2.25x fewer, checked) and cache misses where perf can count them.  Writes the JSON report to
logs/bench/conv-<time>.json and a TensorBoard run to logs/conv/<time>/ (table, schedules, the
roofline picture with every algorithm on it).

The loop nest runs at well under 1 GFLOP/s: it is timed once per shape, and only where one call
stays under --loops-limit GFLOP.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from tfbench.plumbing import cli
from tfbench.plumbing.errors import UserError, run_cli


def _parser() -> argparse.ArgumentParser:
    parser = cli.parser("conv", __doc__.split("\n\n")[0])
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("models", nargs="*", default=["vgg19", "lenet5"], help=cli.MODEL_HELP + " (one or more)")
    cli.add_model_source(parser)
    parser.add_argument("--batch-sizes", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--algorithms", default="all", help="comma-separated algorithms, or all")
    parser.add_argument("--layers", default=None,
                        help="only shapes of these layers, comma-separated (e.g. block3_conv1,block5_conv1 or c1)")
    cli.add_repeats(parser, 5)
    parser.add_argument("--warmup", type=cli.non_negative_int, default=1, help="untimed calls per case")
    parser.add_argument("--loops-limit", type=cli.positive_float, default=4.0,
                        help="time the loop nest only where one call is at most this many GFLOP")
    parser.add_argument("--no-eigen", action="store_true", help="skip the Eigen child process")
    parser.add_argument("--no-perf", action="store_true", help="skip the cache-miss counts")
    parser.add_argument("--matmul-size", type=cli.positive_int, default=1024, help="N of the peak-probe matmul")
    cli.add_logdir(parser, help="runs go to LOGDIR/conv/<time>/, the report to LOGDIR/bench/")
    cli.add_verbose(parser)
    parser.add_argument("--eigen-worker", nargs=2, default=None, help=argparse.SUPPRESS)
    return parser


def _list(text: str, what: str, allowed: Sequence[str] | None = None) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UserError(f"{what}: expected a comma-separated list, got {text!r}")
    for item in items:
        if allowed is not None and item not in allowed:
            raise UserError(f"{what}: {item!r} is not one of {', '.join(allowed)}")
    return items


def _batches(text: str) -> list[int]:
    try:
        values = [int(t) for t in _list(text, "--batch-sizes")]
    except ValueError:
        raise UserError(f"--batch-sizes must be whole numbers like 1,8, got {text!r}") from None
    if min(values) < 1:
        raise UserError(f"--batch-sizes must be at least 1, got {text!r}")
    return values


def run(ns: argparse.Namespace) -> dict[str, Any]:
    """Measure, print, write the report and the TensorBoard run; returns the report."""
    from tfbench import timing
    from tfbench.inspection import conv_algorithms as conv_bench
    from tfbench.inspection.roofline import PeakProbe, plot
    from tfbench.models.load import parse_input_shape
    from tfbench.operators import conv2d as conv
    from tfbench.plumbing import paths
    from tfbench.reporting import summaries

    algorithms = list(conv.ALGORITHMS) if ns.algorithms == "all" else _list(ns.algorithms, "--algorithms",
                                                                            conv.ALGORITHMS)
    batches = _batches(ns.batch_sizes)
    input_shape = parse_input_shape(ns.input_shape) if ns.input_shape else None
    cli.check_output_dir(ns.logdir)
    info = timing.print_header("conv")
    conv.load_library()
    cases, notes = conv_bench.load_cases(ns.models, batches, allow_code=ns.allow_code, input_shape=input_shape)
    if ns.layers:
        wanted = set(_list(ns.layers, "--layers"))
        cases = [c for c in cases if wanted & set(c.layers)]
        if not cases:
            raise UserError(f"--layers {ns.layers}: no conv layer of {', '.join(ns.models)} has that name")
    reference = f"tf.nn.conv2d ({'oneDNN' if info['onednn'] else 'Eigen'})"
    perf_note = "skipped (--no-perf)" if ns.no_perf else conv_bench.perf_status()
    print(f"cache misses: {'perf stat per case' if perf_note == 'ok' else perf_note}")
    for note in notes:
        print(f"left out: {note}")
    schedules = {}
    for case in cases:
        if case.batch == batches[0]:
            lines = [conv.schedule(case.input_shape, case.filter_shape, case.strides, case.padding, algorithm=a)
                     for a in algorithms if case.applies(a)]
            schedules[case.label] = [lines[0].splitlines()[0]] + [line.splitlines()[1] for line in lines]
    first = next(iter(schedules.values()))
    print(f"kernels: {first[0]}")
    eigen: dict[str, Any] = {}
    if not ns.no_eigen:
        print("timing tf.nn.conv2d on Eigen in a child process (TF_ENABLE_ONEDNN_OPTS=0)...", flush=True)
        eigen = conv_bench.eigen_timings(cases, warmup=ns.warmup, repeats=ns.repeats)
    probe = PeakProbe(ns.matmul_size, 1 << 23)
    rows, points = [], []
    for i, case in enumerate(cases, 1):
        print(f"[{i}/{len(cases)}] {case.label}", flush=True)
        timings, rates, counts = conv_bench.time_case(case, algorithms, reference=reference, warmup=ns.warmup,
                                                      repeats=ns.repeats, probe=probe,
                                                      loops_limit_gflop=ns.loops_limit,
                                                      perf=perf_note == "ok")
        case_rows, case_points = conv_bench.rows_for_case(case, timings, rates, counts, reference,
                                                          eigen.get("timings", {}).get(case.label), perf_note)
        rows += case_rows
        points += case_points
    ratios, lines = conv_bench.summary(rows, reference)
    run_dir = paths.run_dir(ns.logdir, "conv")
    peaks = probe.peaks()
    title = (f"{info['cpu']} ({info['cores']} cores), TF {info['tf_version']}, TfbenchConv2D "
             f"({first[0].split()[2]}); shared machine")
    png = plot(points, peaks, Path(run_dir) / "roofline.png", title)
    import matplotlib.image

    summaries.write_images(run_dir, {"roofline": (matplotlib.image.imread(png)[..., :3] * 255).round().astype("uint8")})
    table = conv_bench.markdown(rows)
    summaries.write_text(run_dir, {"conv/table": table, "conv/summary": "\n\n".join(lines),
                                   "conv/schedules": "\n\n".join(f"**{k}**\n\n" + "\n\n".join(v)
                                                                 for k, v in schedules.items())})
    extra = {"peaks": peaks, "schedules": schedules, "cache_misses": perf_note, "left_out": notes,
             "eigen_child": {k: v for k, v in eigen.items() if k != "timings"}, "png": str(png),
             "run_dir": str(run_dir), "summary": lines,
             "settings": {k: v for k, v in vars(ns).items() if k not in ("verbose", "eigen_worker")}}
    report = timing.report("conv", rows, ratios, logdir=ns.logdir, extra=extra, quiet=True)
    columns = ("case", "algorithm", "median_ms", "gflops", "of_matmul_peak", "speed_vs_reference", "direct_per_mult")
    print(timing.format_table([{k: r[k] for k in columns} for r in rows]))
    for line in lines:
        print(line)
    print(f"PNG: {png}\nTensorBoard: {cli.tensorboard_command(run_dir)}\nreport: {report['path']}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    ns = cli.parse(_parser(), argv)
    if ns.eigen_worker:
        from tfbench.inspection import conv_algorithms as conv_bench

        conv_bench.eigen_worker(Path(ns.eigen_worker[0]), Path(ns.eigen_worker[1]))
        return 0
    run(ns)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
