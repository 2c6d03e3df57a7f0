"""The classic models on MNIST (exercise 4.10), as ``python -m tfbench.classic`` runs them: the digits
flattened, timed calls, the confusion matrix and nearest-neighbour pictures, the result table and its
TensorBoard run.  The models themselves are :mod:`tfbench.models.classic`.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from tfbench.plumbing.errors import UserError

METRIC_NAMES = {"l2": "euclidean", "l1": "manhattan"}  # ours -> scikit-learn's


DEFAULT_K = (1, 3, 5, 7)


HEADLINE_K = 3


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
