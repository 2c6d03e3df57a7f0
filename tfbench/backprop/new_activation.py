"""A new activation function with a hand-written gradient, registered from Python (exercise 2.10).

The design: **algebraic swish**, ``f(v) = v * (1 + phi(v)) / 2`` with ``phi(v) = v / sqrt(1 + v^2)``
(the function of exercise 2.7).  Swish / SiLU is ``v * sigmoid(v)``: the input gated by a smooth
switch from 0 to 1.  ``(1 + phi(v)) / 2`` is such a switch too, built from a square root instead of an
exponential, with polynomial tails: for large ``|v|`` the gate approaches 0 and 1 like ``1 / v^2``
rather than like ``e^-|v|``, so negative inputs keep a little gradient for longer.  Properties:

- smooth, ``f(0) = 0``, ``f'(0) = 1/2``, ``f(v) -> v`` for large ``v`` and ``f(v) -> 0`` (from below,
  like ``1 / (4v)``) for very negative ``v``; not monotone: one minimum, -0.150 at v = -0.786;
- derivative by the product rule: ``f'(v) = (1 + phi(v)) / 2 + v * phi'(v) / 2`` with
  ``phi'(v) = (1 + v^2)^(-3/2)``, every piece already computed by the forward pass.

The gradient is registered with ``tf.custom_gradient`` (the mechanism :mod:`tfbench.grads` shows for
``phi`` itself): :func:`algebraic_swish` returns its value and its backward function, so the tape,
eagerly and inside ``tf.function``, uses the hand-written derivative instead of differentiating the
ops.  :func:`gradient_check` runs ``tf.test.compute_gradient`` (the hand-written Jacobian beside a
finite-difference one); :func:`train_comparison` trains the same small MLP on MNIST digits with
ReLU, TensorFlow's swish and algebraic swish.

Run: ``python -m tfbench.basics new-activation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf


@tf.custom_gradient
def algebraic_swish(v: tf.Tensor) -> Any:
    """f(v) = v (1 + v / sqrt(1 + v^2)) / 2, with its derivative written by hand."""
    s = 1.0 + tf.square(v)
    r = tf.math.rsqrt(s)  # 1 / sqrt(1 + v^2)
    gate = 0.5 * (1.0 + v * r)

    def grad(dy: tf.Tensor) -> tf.Tensor:
        """Returns dy * ((1 + phi(v)) / 2 + v * phi'(v) / 2), phi'(v) = (1 + v^2)^(-3/2)."""
        return dy * (gate + 0.5 * v * r * r * r)

    return v * gate, grad


def algebraic_swish_by_ops(v: tf.Tensor) -> tf.Tensor:
    """The same function from plain ops, so the tape differentiates it itself (a second reference)."""
    return v * 0.5 * (1.0 + v / tf.sqrt(1.0 + v * v))


@dataclass
class GradientCheck:
    """The hand-written gradient against two references."""

    points: int
    max_error_finite_differences: float  # tf.test.compute_gradient: hand-written vs numerical Jacobian
    max_error_autodiff: float  # hand-written vs the tape through algebraic_swish_by_ops


def gradient_check(points: int = 201, span: float = 8.0) -> GradientCheck:
    """``tf.test.compute_gradient`` in float64 at ``points`` points of [-span, span], and the tape's own."""
    x = tf.constant(np.linspace(-span, span, points))
    theoretical, numerical = tf.test.compute_gradient(algebraic_swish, [x])
    fd_error = float(np.max(np.abs(theoretical[0] - numerical[0])))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, by_ops = algebraic_swish(x), algebraic_swish_by_ops(x)
    auto_error = float(np.max(np.abs(tape.gradient(ours, x).numpy() - tape.gradient(by_ops, x).numpy())))
    return GradientCheck(points, fd_error, auto_error)


ACTIVATIONS = {"ReLU": tf.nn.relu, "swish (v * sigmoid(v))": tf.nn.silu, "algebraic swish (ours)": algebraic_swish}


@dataclass
class TrainResult:
    """One activation in the small MLP: held-out accuracy after each epoch."""

    activation: str
    test_accuracy: list[float]
    final_loss: float


def train_comparison(epochs: int = 3, hidden: int = 64, batch_size: int = 64, seed: int = 0,
                     train_limit: int | None = None) -> tuple[list[TrainResult], str]:
    """A 784-``hidden``-10 MLP on the MNIST digits :func:`tfbench.data.mnist.load` gives, once per activation.

    Same initial weights, same batches, Adam(1e-3): only the activation differs.  Returns the results
    and the data's one-line summary.
    """
    from tfbench.data.mnist import load

    data = load(None)
    x_train = data.x_train.reshape(len(data.x_train), -1)[:train_limit]
    y_train = data.y_train[:train_limit]
    x_test, y_test = data.x_test.reshape(len(data.x_test), -1), data.y_test
    rng = np.random.default_rng(seed)
    limit1, limit2 = np.sqrt(6.0 / (784 + hidden)), np.sqrt(6.0 / (hidden + 10))
    init = [rng.uniform(-limit1, limit1, (784, hidden)).astype(np.float32), np.zeros(hidden, np.float32),
            rng.uniform(-limit2, limit2, (hidden, 10)).astype(np.float32), np.zeros(10, np.float32)]
    orders = [np.random.default_rng(seed + 1 + e).permutation(len(x_train)) for e in range(epochs)]
    results = []
    for name, activation in ACTIVATIONS.items():
        w1, b1, w2, b2 = (tf.Variable(a) for a in init)
        variables = [w1, b1, w2, b2]
        optimizer = tf.keras.optimizers.Adam(1e-3)

        def logits_of(x: tf.Tensor) -> tf.Tensor:
            return activation(x @ w1 + b1) @ w2 + b2

        @tf.function
        def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits_of(x)))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        accuracy, loss = [], 0.0
        for order in orders:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                loss = float(train_step(tf.constant(x_train[idx]), tf.constant(y_train[idx])))
            predicted = np.argmax(logits_of(tf.constant(x_test)).numpy(), axis=1)
            accuracy.append(float(np.mean(predicted == y_test)))
        results.append(TrainResult(name, accuracy, loss))
    return results, data.summary()


def draw(run_dir: str | Path) -> Path:
    """Algebraic swish beside swish and ReLU, and the three derivatives: PNG and TensorBoard image."""
    from tfbench.backprop import pictures

    v = tf.constant(np.linspace(-6.0, 6.0, 601))
    fig, axes = pictures.new_figure(2, 1, size=(4.5, 3.5))
    for name, fn in ACTIVATIONS.items():
        with tf.GradientTape() as tape:
            tape.watch(v)
            y = fn(v)
        axes[0][0].plot(v.numpy(), y.numpy(), label=name)
        axes[0][1].plot(v.numpy(), tape.gradient(y, v).numpy(), label=name)
    axes[0][0].set_title("f(v)")
    axes[0][1].set_title("f'(v) (the registered gradient for ours)")
    for ax in axes[0]:
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.legend(fontsize=8)
        ax.set_xlabel("v")
    fig.tight_layout()
    return pictures.save(fig, run_dir, "algebraic_swish")


def run(run_dir: str | Path, epochs: int = 3) -> str:
    """Exercise 2.10: the gradient checks, the picture and the training comparison, as markdown."""
    from tfbench.reporting import summaries
    from tfbench.reporting.tables import markdown_table

    check = gradient_check()
    v = tf.constant(np.linspace(-3.0, 0.0, 30001))
    y = algebraic_swish(v).numpy()
    lowest = int(np.argmin(y))
    facts = (f"algebraic swish f(v) = v (1 + v / sqrt(1 + v^2)) / 2: f(0) = 0, f'(0) = 0.5, minimum "
             f"{y[lowest]:.4f} at v = {v.numpy()[lowest]:.3f}.\n\n"
             f"tf.test.compute_gradient at {check.points} points of [-8, 8] (float64): largest |hand-written - "
             f"finite differences| = {check.max_error_finite_differences:.2e}; largest |hand-written - tape through "
             f"the plain ops| = {check.max_error_autodiff:.2e}")
    picture = draw(run_dir)
    results, source = train_comparison(epochs=epochs)
    table = markdown_table(["activation in a 784-64-10 MLP", *[f"held-out accuracy, epoch {e + 1}"
                                                              for e in range(epochs)], "last batch loss"],
                           [[r.activation, *[f"{a:.3f}" for a in r.test_accuracy], f"{r.final_loss:.3f}"]
                            for r in results])
    text = "\n\n".join([facts, f"{source}; Adam(1e-3), batch 64, same initial weights and batches:", table,
                        f"picture: {picture}"])
    summaries.write_text(run_dir, {"new_activation": text})
    return text
