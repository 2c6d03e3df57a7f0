"""Exercise 4.10's classic methods written in TensorFlow: least squares, softmax regression, k-nearest neighbours.

These are models without data: each takes arrays of flat feature vectors (N, D) and integer
labels 0..C-1, so they work on any digits (this module never imports :mod:`tfbench.data`).
Hand-written on purpose, because how they map onto TensorFlow ops is the exercise:

- :func:`fit_least_squares`: linear regression on one-hot targets, in closed form with
  ``tf.linalg.lstsq``; the predicted class is the largest of the ten regressed outputs.
- :class:`SoftmaxRegression`: a linear layer and softmax cross-entropy, trained by full-batch
  gradient steps taken with ``tf.GradientTape`` inside one ``tf.function`` (L2 penalty as
  scikit-learn's ``LogisticRegression(C=1)`` uses).
- :class:`KNearestNeighbours`: the squared L2 distances of a whole batch of queries as one
  matrix product (``|a|^2 - 2ab + |b|^2``), L1 by broadcasting; ``tf.math.top_k`` for the k
  nearest, then a majority vote whose ties go to the smallest label (what scikit-learn's
  ``KNeighborsClassifier`` does: it takes the most probable class with ``argmax``).
  Queries are processed in batches so memory stays bounded: :meth:`KNearestNeighbours.peak_bytes`.
  The graph version of L1 is compiled with XLA, which fuses subtract, abs and sum so the
  (B, N, D) difference tensor is never stored (about 3x faster than the plain graph here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

METRICS = ("l2", "l1")


def flatten(x: np.ndarray | tf.Tensor) -> tf.Tensor:
    """(N, ...) images -> (N, D) float32 rows."""
    x = tf.convert_to_tensor(x, tf.float32)
    return tf.reshape(x, [tf.shape(x)[0], -1])


def accuracy(predictions: np.ndarray | tf.Tensor, labels: np.ndarray) -> float:
    """Fraction of predictions equal to the labels."""
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


# ---------------------------------------------------------------- linear regression, closed form
@dataclass
class LeastSquares:
    """Weights (D+1, C) of a linear map from [x, 1] to one-hot targets."""

    weights: tf.Tensor

    def scores(self, x: np.ndarray | tf.Tensor) -> tf.Tensor:
        """The regressed one-hot outputs (N, C)."""
        x = flatten(x)
        return tf.matmul(x, self.weights[:-1]) + self.weights[-1]

    def predict(self, x: np.ndarray | tf.Tensor) -> np.ndarray:
        """The class whose output is largest."""
        return tf.argmax(self.scores(x), axis=1).numpy()


def fit_least_squares(x: np.ndarray | tf.Tensor, y: np.ndarray, num_classes: int = 10,
                      l2: float = 0.0) -> LeastSquares:
    """Solve min_W |[x, 1] W - onehot(y)|^2 (+ l2 |W|^2) with ``tf.linalg.lstsq``.

    With ``l2 == 0`` it takes the minimum-norm solution (``fast=False``: a complete orthogonal
    decomposition, since MNIST's always-black border pixels make the problem rank-deficient);
    with ``l2 > 0`` the regularised normal equations (Cholesky), in float64 either way.
    """
    x = tf.cast(flatten(x), tf.float64)
    design = tf.concat([x, tf.ones([tf.shape(x)[0], 1], tf.float64)], axis=1)
    targets = tf.one_hot(np.asarray(y), num_classes, dtype=tf.float64)
    weights = tf.linalg.lstsq(design, targets, l2_regularizer=l2, fast=l2 > 0)
    return LeastSquares(tf.cast(weights, tf.float32))


# ---------------------------------------------------------------- softmax regression, GradientTape
class SoftmaxRegression(tf.Module):
    """Multinomial logistic regression: logits = x W + b, trained with GradientTape in a tf.function."""

    def __init__(self, num_features: int, num_classes: int = 10, name: str | None = None):
        super().__init__(name=name)
        self.w = tf.Variable(tf.zeros([num_features, num_classes]), name="w")
        self.b = tf.Variable(tf.zeros([num_classes]), name="b")

    def logits(self, x: tf.Tensor) -> tf.Tensor:
        """x W + b for flat rows (N, D)."""
        return tf.matmul(x, self.w) + self.b

    def predict(self, x: np.ndarray | tf.Tensor) -> np.ndarray:
        """The most probable class of each row (or image)."""
        return tf.argmax(self.logits(flatten(x)), axis=1).numpy()

    def fit(self, x: np.ndarray | tf.Tensor, y: np.ndarray, *, steps: int = 300, learning_rate: float = 0.05,
            c: float = 1.0) -> list[float]:
        """Full-batch Adam steps on mean cross-entropy + |W|^2 / (2 C N) (scikit-learn's objective / N).

        The whole loop runs inside one ``tf.function`` (a ``tf.range`` loop becomes a graph
        ``while``); returns the loss at every step.
        """
        import keras

        x, labels = flatten(x), tf.constant(np.asarray(y), tf.int64)
        n = tf.cast(tf.shape(x)[0], tf.float32)
        optimizer = keras.optimizers.Adam(learning_rate)
        optimizer.build([self.w, self.b])
        variables = [self.w, self.b]

        @tf.function
        def train(num_steps: tf.Tensor) -> tf.Tensor:
            losses = tf.TensorArray(tf.float32, size=num_steps)
            for step in tf.range(num_steps):
                with tf.GradientTape() as tape:
                    xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, self.logits(x)))
                    loss = xent + tf.reduce_sum(tf.square(self.w)) / (2.0 * c * n)
                grads = tape.gradient(loss, variables)
                optimizer.apply_gradients(zip(grads, variables))
                losses = losses.write(step, loss)
            return losses.stack()

        return train(tf.constant(steps)).numpy().tolist()


# ---------------------------------------------------------------- k-nearest neighbours
def pairwise_distances(queries: tf.Tensor, references: tf.Tensor, metric: str = "l2",
                       reference_sq_norms: tf.Tensor | None = None) -> tf.Tensor:
    """(Q, N) distances: squared L2 as ``|a|^2 - 2ab + |b|^2`` (one matmul, clamped at 0), or L1.

    Squared L2 orders neighbours exactly as L2 does, so the square root is never taken.  L1
    has no matrix-product form: it broadcasts to (Q, N, D), which is why its batches are small.
    """
    if metric == "l2":
        if reference_sq_norms is None:
            reference_sq_norms = tf.reduce_sum(tf.square(references), axis=1)
        q_sq = tf.reduce_sum(tf.square(queries), axis=1, keepdims=True)
        cross = tf.matmul(queries, references, transpose_b=True)
        return tf.maximum(q_sq - 2.0 * cross + reference_sq_norms[None, :], 0.0)
    if metric == "l1":
        return tf.reduce_sum(tf.abs(queries[:, None, :] - references[None, :, :]), axis=2)
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def majority_vote(neighbour_labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """The most frequent label of each row; ties go to the smallest label (deterministic, like scikit-learn).

    ``tf.argmax`` does not promise which of equal maxima it returns, so the score
    ``count * C + (C - 1 - label)`` makes every maximum unique and favours small labels among equal counts.
    """
    counts = tf.reduce_sum(tf.one_hot(neighbour_labels, num_classes, dtype=tf.int32), axis=1)
    score = counts * num_classes + tf.range(num_classes - 1, -1, -1, dtype=tf.int32)[None, :]
    return tf.argmax(score, axis=1, output_type=tf.int32)


class KNearestNeighbours(tf.Module):
    """Brute-force kNN over stored references: batched distances, ``tf.math.top_k``, majority vote."""

    def __init__(self, references: np.ndarray | tf.Tensor, labels: np.ndarray, *, num_classes: int = 10,
                 metric: str = "l2", batch_size: int | None = None, name: str | None = None):
        super().__init__(name=name)
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        self.num_classes = num_classes
        self.references = flatten(references)
        self.labels = tf.constant(np.asarray(labels), tf.int32)
        self.sq_norms = tf.reduce_sum(tf.square(self.references), axis=1)
        self.requested_batch_size = batch_size
        self._graphs: dict[int, tf.types.experimental.GenericFunction] = {}

    @property
    def num_references(self) -> int:
        """How many stored training rows."""
        return int(self.references.shape[0])

    def batch_size(self, graph: bool = True) -> int:
        """Queries per batch: as requested, else :func:`default_batch_size` for this metric and mode."""
        return self.requested_batch_size or default_batch_size(self.metric, graph)

    def peak_bytes(self, graph: bool = True) -> int:
        """Bytes of the largest float32 intermediate of one query batch of B queries against N references.

        L2: the (B, N) distance matrix.  L1 run eagerly: the (B, N, D) difference tensor; as
        the XLA-compiled graph, the (B, N) distances (XLA fuses the difference into the sum).
        """
        per_query = self.num_references * 4
        if self.metric == "l1" and not graph:
            per_query *= int(self.references.shape[1])
        return self.batch_size(graph) * per_query

    def _neighbours(self, queries: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
        distances = pairwise_distances(queries, self.references, self.metric, self.sq_norms)
        # top_k of the negated distances: the k smallest, nearest first; equal values keep index order
        neg, indices = tf.math.top_k(-distances, k=k, sorted=True)
        return -neg, indices

    def graph_function(self, k: int) -> tf.types.experimental.GenericFunction:
        """The ``tf.function`` (one per k: XLA needs k fixed) taking a (B, D) query batch of any B."""
        if k not in self._graphs:
            spec = [tf.TensorSpec([None, int(self.references.shape[1])], tf.float32)]
            self._graphs[k] = tf.function(lambda q: self._neighbours(q, k), input_signature=spec,
                                          jit_compile=self.metric == "l1", autograph=False)
        return self._graphs[k]

    def kneighbors(self, queries: np.ndarray | tf.Tensor, k: int, *, graph: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Distances (squared for L2) and indices (Q, k) of each query's k nearest references, nearest first."""
        if not 1 <= k <= self.num_references:
            raise ValueError(f"k must be between 1 and {self.num_references}, got {k}")
        fn = self.graph_function(k) if graph else (lambda q: self._neighbours(q, k))
        queries = flatten(queries)
        distances, indices = [], []
        batch = self.batch_size(graph)
        for start in range(0, int(queries.shape[0]), batch):
            d, i = fn(queries[start: start + batch])
            distances.append(d)
            indices.append(i)
        if not distances:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int32)
        return tf.concat(distances, 0).numpy(), tf.concat(indices, 0).numpy()

    def predict(self, queries: np.ndarray | tf.Tensor, k: int = 3, *, graph: bool = True) -> np.ndarray:
        """The majority label of each query's k nearest references (ties: the smallest label)."""
        _, indices = self.kneighbors(queries, k, graph=graph)
        if len(indices) == 0:
            return np.zeros((0,), np.int32)
        return majority_vote(tf.gather(self.labels, indices), self.num_classes).numpy()

    def predict_many_k(self, queries: np.ndarray | tf.Tensor, ks: Sequence[int], *, graph: bool = True
                       ) -> dict[int, np.ndarray]:
        """Predictions for several k from one neighbour search (the largest k's neighbours hold the smaller)."""
        _, indices = self.kneighbors(queries, max(ks), graph=graph)
        labels = tf.gather(self.labels, indices)
        return {k: majority_vote(labels[:, :k], self.num_classes).numpy() for k in ks}


def default_batch_size(metric: str, graph: bool = True) -> int:
    """Queries per batch: L2 500 (a (500, N) matrix); L1 100 compiled (fused) and 8 eagerly ((8, N, D) differences)."""
    if metric == "l2":
        return 500
    return 100 if graph else 8
