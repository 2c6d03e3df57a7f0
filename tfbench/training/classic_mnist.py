"""The classic models on MNIST (exercise 4.10), as ``python -m tfbench.classic`` runs them: least squares,
softmax regression and kNN (each k, each metric) fitted on the flattened digits and timed, each beside its
scikit-learn peer on the same split; the result table, ``results.json`` and the TensorBoard run (accuracy per
k, the confusion matrix, the misclassified digits with their neighbours); and the kNN prediction time against
scikit-learn's brute force that ``python -m tfbench.bench classic`` reports.  The models themselves are
:mod:`tfbench.models.classic`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from tfbench.plumbing.errors import UserError

if TYPE_CHECKING:
    from tfbench.data.mnist import DigitData
    from tfbench.timing import Timing

METRIC_NAMES = {"l2": "euclidean", "l1": "manhattan"}  # ours -> scikit-learn's


DEFAULT_K = (1, 3, 5, 7)


HEADLINE_K = 3


@dataclass
class FlatDigits:
    """The digits of :func:`tfbench.data.mnist.load` as float32 rows (N, 784) in [0, 1], labels beside them."""

    data: DigitData
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def flat_digits(data_path: str | None) -> FlatDigits:
    """:func:`tfbench.data.mnist.load` (``None``: the default digits), each image flattened to one row."""
    from tfbench.data import mnist

    data = mnist.load(data_path)
    if data.x_train.shape[1:] != (mnist.IMAGE_SIZE, mnist.IMAGE_SIZE, 1):
        raise UserError(f"{data.source}: images of shape {data.x_train.shape[1:]}, expected 28x28x1")
    return FlatDigits(data, data.x_train.reshape(len(data.x_train), -1), data.y_train,
                      data.x_test.reshape(len(data.x_test), -1), data.y_test)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall time in milliseconds."""
    start = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - start) * 1e3


# ---------------------------------------------------------------- the scikit-learn peers
def sklearn_least_squares(digits: FlatDigits, l2: float) -> np.ndarray:
    """``LinearRegression`` (``Ridge(alpha=l2)`` with a penalty) on one-hot targets: the test predictions."""
    from sklearn.linear_model import LinearRegression, Ridge

    onehot = np.eye(10)[digits.y_train]
    model = Ridge(alpha=l2) if l2 > 0 else LinearRegression()
    return model.fit(digits.x_train, onehot).predict(digits.x_test).argmax(axis=1)


def sklearn_softmax(digits: FlatDigits) -> np.ndarray:
    """``LogisticRegression(C=1)``: the test predictions."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=500).fit(digits.x_train, digits.y_train).predict(digits.x_test)


def sklearn_knn(digits: FlatDigits, k: int, metric: str) -> np.ndarray:
    """``KNeighborsClassifier(k, algorithm="brute")`` with the same metric: the test predictions."""
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(k, algorithm="brute", metric=METRIC_NAMES[metric])
    return model.fit(digits.x_train, digits.y_train).predict(digits.x_test)


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
                      losses: Sequence[float], headline: dict[str, Any], digits: FlatDigits, grid_rows: int) -> None:
    """Scalars (accuracy per k, softmax loss), confusion matrix and neighbour grid images, Text cards."""
    import tensorflow as tf

    from tfbench.reporting import summaries

    x_train, y_train, x_test, y_test = digits.x_train, digits.y_train, digits.x_test, digits.y_test
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


# ---------------------------------------------------------------- python -m tfbench.classic
@dataclass
class Settings:
    """What the experiment fits: kNN's neighbour counts, metrics, mode and batch; the two regressions' knobs."""

    ks: Sequence[int] = DEFAULT_K
    metrics: Sequence[str] = ("l2", "l1")
    mode: str = "function"  # kNN search as a tf.function, or "eager"
    batch_size: int | None = None  # kNN queries per batch (None: per metric and mode)
    softmax_steps: int = 200
    softmax_lr: float = 0.1
    lstsq_l2: float = 0.0
    peer: bool = True  # scikit-learn beside each row
    grid_rows: int = 12  # misclassified digits shown in TensorBoard


@dataclass
class KnnSearch:
    """One metric's kNN search over the test digits: its batches and their peak memory."""

    metric: str
    mode: str
    batch_size: int
    peak_mib: float
    queries: int
    references: int

    def summary(self) -> str:
        """One line: the batches, their peak memory, and the size of the search."""
        return (f"kNN {self.metric}: {self.batch_size} queries per batch, peak {self.peak_mib:.1f} MiB per batch "
                f"({self.mode}); {self.queries} queries x {self.references} references")


@dataclass
class Result:
    """The table rows, kNN accuracy per metric and k, the softmax losses, the searches, and where they went."""

    rows: list[dict[str, Any]]
    knn_accuracy: dict[str, dict[int, float]]
    softmax_losses: list[float]
    searches: list[KnnSearch]
    results_json: Path


class _Table:
    """The result rows as they are built: ours, then the scikit-learn peer, each a step of the progress bar."""

    def __init__(self, y_test: np.ndarray, peer: bool, bar: Any) -> None:
        self.y_test, self.peer, self.bar = y_test, peer, bar
        self.rows: list[dict[str, Any]] = []

    def stage(self, text: str) -> None:
        self.bar.set_description_str(text)

    def add(self, method: str, ours: np.ndarray, ours_ms: float | None, peer_name: str,
            peer_fn: Callable[[], np.ndarray]) -> dict[str, Any]:
        from tfbench.models.classic import accuracy

        row: dict[str, Any] = {"method": method, "accuracy": accuracy(ours, self.y_test), "ms": ours_ms}
        self.bar.update()
        if self.peer:
            self.stage(f"scikit-learn {peer_name}")
            theirs, theirs_ms = timed(peer_fn)
            self.bar.update()
            row.update({"peer": peer_name, "peer_accuracy": accuracy(theirs, self.y_test), "peer_ms": theirs_ms,
                        "agreement": float(np.mean(ours == theirs))})
        self.rows.append(row)
        return row


def run_experiment(digits: FlatDigits, run: Path, settings: Settings, *, progress: bool = True,
                   on_search: Callable[[KnnSearch], None] | None = None) -> Result:
    """Least squares, softmax regression and kNN (each k, each metric), ours beside scikit-learn's.

    Writes the TensorBoard run and ``results.json`` into ``run``.  ``on_search`` hears of each metric's
    kNN search as it finishes (it may print: the progress bar steps aside).
    """
    from tqdm import tqdm

    from tfbench.models import classic
    from tfbench.plumbing.files import write_json

    x_train, y_train, x_test, y_test = digits.x_train, digits.y_train, digits.x_test, digits.y_test
    ks, metrics = sorted(set(settings.ks)), tuple(settings.metrics)
    # a step per row of the table (ours, then scikit-learn's), then TensorBoard
    steps = (2 + len(metrics) * len(ks)) * (1 + settings.peer) + 1
    bar = tqdm(total=steps, unit="step", disable=not progress, leave=False)
    table = _Table(y_test, settings.peer, bar)

    # linear regression, closed form
    table.stage("least squares")
    lstsq, fit_ms = timed(lambda: classic.fit_least_squares(x_train, y_train, l2=settings.lstsq_l2))
    table.add("least squares on one-hot (tf.linalg.lstsq)", lstsq.predict(x_test), fit_ms,
              "LinearRegression" if settings.lstsq_l2 == 0 else "Ridge",
              lambda: sklearn_least_squares(digits, settings.lstsq_l2))

    # softmax regression, GradientTape in a tf.function
    table.stage(f"softmax regression, {settings.softmax_steps} Adam steps")
    softmax = classic.SoftmaxRegression(x_train.shape[1])
    losses, fit_ms = timed(lambda: softmax.fit(x_train, y_train, steps=settings.softmax_steps,
                                               learning_rate=settings.softmax_lr))
    table.add("softmax regression (GradientTape, tf.function)", softmax.predict(x_test), fit_ms,
              "LogisticRegression(C=1)", lambda: sklearn_softmax(digits))

    # k-nearest neighbours, every k from one search per metric
    knn_accuracy: dict[str, dict[int, float]] = {}
    searches: list[KnnSearch] = []
    headline: dict[str, Any] = {}
    graph = settings.mode == "function"
    for metric in metrics:
        table.stage(f"kNN {metric}, {len(y_test)} queries")
        knn = classic.KNearestNeighbours(x_train, y_train, metric=metric, batch_size=settings.batch_size)
        if graph:
            knn.predict(x_test[:1], max(ks))  # trace (and compile) outside the timing
        predictions, ms = timed(lambda: knn.predict_many_k(x_test, ks, graph=graph))
        searches.append(KnnSearch(metric, settings.mode, knn.batch_size(graph), knn.peak_bytes(graph) / 2**20,
                                  len(y_test), knn.num_references))
        if on_search is not None:
            with tqdm.external_write_mode():
                on_search(searches[-1])
        knn_accuracy[metric] = {}
        for k in ks:
            row = table.add(f"kNN k={k} {metric} ({settings.mode})", predictions[k], ms if k == ks[0] else None,
                            f"KNeighborsClassifier(brute, {METRIC_NAMES[metric]})",
                            lambda k=k, metric=metric: sklearn_knn(digits, k, metric))
            knn_accuracy[metric][k] = row["accuracy"]
        if metric == metrics[0]:
            k0 = HEADLINE_K if HEADLINE_K in ks else ks[0]
            headline = {"metric": metric, "k": k0, "predictions": predictions[k0], "knn": knn}

    table.stage("TensorBoard")
    write_tensorboard(run, table.rows, knn_accuracy, losses, headline, digits, settings.grid_rows)
    bar.update()
    bar.close()
    results_json = run / "results.json"
    write_json(results_json, {
        "data": digits.data.source, "train": len(y_train), "test": len(y_test), "ks": ks, "metrics": list(metrics),
        "mode": settings.mode, "rows": table.rows, "knn_accuracy": {m: {str(k): a for k, a in v.items()}
                                                                     for m, v in knn_accuracy.items()},
        "softmax_losses": losses,
    })
    return Result(table.rows, knn_accuracy, losses, searches, results_json)


# ---------------------------------------------------------------- python -m tfbench.bench classic
@dataclass
class KnnSpeed:
    """kNN prediction timings (ours and scikit-learn's), their ratios, and whether the predictions agree."""

    rows: list[Timing]
    ratios: dict[str, float] = field(default_factory=dict)
    same_predictions: dict[str, bool] = field(default_factory=dict)


def knn_speed(digits: FlatDigits, *, k: int, metrics: Sequence[str], batch_size: int | None = None,
              eager: bool = True, warmup: int = 2, repeats: int = 7) -> KnnSpeed:
    """kNN prediction over the test digits: ours (tf.function, eager) vs scikit-learn's brute force, round robin."""
    from sklearn.neighbors import KNeighborsClassifier

    from tfbench import timing
    from tfbench.models import classic

    x_train, y_train, x_test, y_test = digits.x_train, digits.y_train, digits.x_test, digits.y_test
    speed = KnnSpeed([])
    for metric in metrics:
        knn = classic.KNearestNeighbours(x_train, y_train, metric=metric, batch_size=batch_size)
        peer = KNeighborsClassifier(k, algorithm="brute", metric=METRIC_NAMES[metric]).fit(x_train, y_train)
        cases = {f"tfbench {metric} tf.function": lambda knn=knn: knn.predict(x_test, k, graph=True)}
        if eager:
            cases[f"tfbench {metric} eager"] = lambda knn=knn: knn.predict(x_test, k, graph=False)
        cases[f"scikit-learn {metric} brute"] = lambda peer=peer: peer.predict(x_test)
        same = bool(np.array_equal(knn.predict(x_test, k), peer.predict(x_test)))
        speed.same_predictions[metric] = same
        timings = timing.compare(cases, warmup=warmup, repeats=repeats, metric=metric, k=k,
                                queries=len(y_test), references=len(y_train))
        for t in timings:
            graph = "eager" not in t.case
            if t.case.startswith("tfbench"):
                t.extra.update(batch_size=knn.batch_size(graph), peak_mib=knn.peak_bytes(graph) / 2**20)
            t.extra["same_predictions_as_sklearn"] = same
        ms = {t.case: t.median_ms for t in timings}
        ours = ms[f"tfbench {metric} tf.function"]
        speed.ratios[f"{metric}: scikit-learn / tfbench tf.function (>1: ours faster)"] = (
            ms[f"scikit-learn {metric} brute"] / ours)
        if eager:
            speed.ratios[f"{metric}: eager / tf.function"] = ms[f"tfbench {metric} eager"] / ours
        speed.rows += timings
    return speed
