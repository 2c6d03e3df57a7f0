"""Activation functions and their derivatives (exercises 2.4, 2.6, 2.7).

2.4: five activations on one set of axes (:func:`draw`), with their ranges (:func:`ranges`):

==============  =====================================  ===============
sigmoid         1 / (1 + e^-v)                          (0, 1)
tanh            (e^v - e^-v) / (e^v + e^-v)              (-1, 1)
ReLU            max(0, v)                                [0, inf)
leaky ReLU      v if v > 0 else a*v  (a = 0.1 here)      (-inf, inf)
ELU             v if v > 0 else e^v - 1                  (-1, inf)
==============  =====================================  ===============

The table printed beside the picture also gives each function's smallest and largest value on
[-10, 10] as computed, so the open ends (sigmoid never reaches 0 or 1) can be seen against the
closed ones (ReLU is exactly 0 for every negative input).

2.6: sigmoid's derivative in closed form is ``s(v) * (1 - s(v))``: at 0, ``0.5 * 0.5 = 0.25``, its
largest value (the reason sigmoid networks shrink gradients by at least 4 per layer).

2.7: ``phi(v) = v / sqrt(1 + v^2)`` has ``phi'(v) = 1 / (1 + v^2)^(3/2)`` (quotient rule:
``(sqrt(1 + v^2) - v * v / sqrt(1 + v^2)) / (1 + v^2)``); at 0 it is 1.

:func:`check_derivative` compares each closed form with the derivative ``tf.GradientTape`` computes
at thousands of points, in float64, and returns the largest difference.

Run: ``python -m tfbench.basics activations``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

LEAKY_SLOPE = 0.1  # large enough to see on the plot (Keras' default is 0.2, many papers use 0.01)
PLOT_RANGE = (-4.0, 4.0)
MEASURE_RANGE = (-10.0, 10.0)


def _activations() -> dict[str, tuple[Callable, str, str]]:
    """name -> (TensorFlow function, formula, range as a mathematician writes it)."""
    import tensorflow as tf

    return {
        "sigmoid": (tf.sigmoid, "1 / (1 + e^-v)", "(0, 1)"),
        "tanh": (tf.tanh, "(e^v - e^-v) / (e^v + e^-v)", "(-1, 1)"),
        "ReLU": (tf.nn.relu, "max(0, v)", "[0, inf)"),
        "leaky ReLU": (lambda v: tf.nn.leaky_relu(v, alpha=LEAKY_SLOPE), f"v if v > 0 else {LEAKY_SLOPE}*v",
                       "(-inf, inf)"),
        "ELU": (tf.nn.elu, "v if v > 0 else e^v - 1", "(-1, inf)"),
    }


@dataclass
class Range:
    """One activation's range: as stated, and as measured on :data:`MEASURE_RANGE`."""

    name: str
    formula: str
    stated: str
    measured_min: float
    measured_max: float
    at_zero: float
    slope_at_zero: float  # from the tape (ReLU's and leaky ReLU's are TensorFlow's choice at the kink)


def ranges(points: int = 20001) -> list[Range]:
    """Every activation evaluated (and differentiated) on a fine grid of :data:`MEASURE_RANGE`, in float64."""
    import tensorflow as tf

    v = tf.constant(np.linspace(*MEASURE_RANGE, points))
    zero = tf.constant([0.0], tf.float64)
    out = []
    for name, (fn, formula, stated) in _activations().items():
        y = fn(v).numpy()
        with tf.GradientTape() as tape:
            tape.watch(zero)
            y0 = fn(zero)
        slope = float(tape.gradient(y0, zero)[0])
        out.append(Range(name, formula, stated, float(y.min()), float(y.max()), float(y0[0]), slope))
    return out


def draw(run_dir: str | Path) -> Path:
    """The five activations on one set of axes over :data:`PLOT_RANGE`: PNG and TensorBoard image."""
    import tensorflow as tf

    from tfbench.backprop import pictures

    v = np.linspace(*PLOT_RANGE, 801)
    fig, axes = pictures.new_figure(size=(7.0, 4.5))
    ax = axes[0][0]
    for name, (fn, formula, _) in _activations().items():
        ax.plot(v, fn(tf.constant(v)).numpy(), label=f"{name}: {formula}", linewidth=2)
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set_xlabel("v")
    ax.set_ylabel("activation(v)")
    ax.set_ylim(-1.5, 4.0)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("five activation functions")
    return pictures.save(fig, run_dir, "activations")


# ---------------------------------------------------------------- 2.6, 2.7: derivatives in closed form
def sigmoid_prime(v: np.ndarray) -> np.ndarray:
    """d/dv sigmoid(v) = s (1 - s), s = sigmoid(v) (exercise 2.6)."""
    s = 1.0 / (1.0 + np.exp(-v))
    return s * (1.0 - s)


def phi(v: np.ndarray) -> np.ndarray:
    """phi(v) = v / sqrt(1 + v^2) (exercise 2.7): like tanh, from -1 to 1, but algebraic."""
    return v / np.sqrt(1.0 + v * v)


def phi_prime(v: np.ndarray) -> np.ndarray:
    """d/dv phi(v) = (1 + v^2)^(-3/2) (exercise 2.7)."""
    return (1.0 + v * v) ** -1.5


@dataclass
class DerivativeCheck:
    """A closed-form derivative against the tape's."""

    name: str
    closed_form: str
    at_zero: float  # the closed form's value at 0
    points: int
    max_abs_error: float  # largest |closed form - tape| over the points


def check_derivative(name: str, closed_form: str, forward: Callable, derivative: Callable[[np.ndarray], np.ndarray],
                     points: int = 4001, span: float = 10.0) -> DerivativeCheck:
    """Differentiate ``forward`` (a TensorFlow function) with ``tf.GradientTape`` at ``points`` points of
    [-span, span] (0 among them) in float64, and compare with ``derivative`` (NumPy)."""
    import tensorflow as tf

    v = np.linspace(-span, span, points)
    x = tf.constant(v)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = forward(x)
    tape_values = tape.gradient(y, x).numpy()
    error = float(np.max(np.abs(tape_values - derivative(v))))
    return DerivativeCheck(name, closed_form, float(derivative(np.array(0.0))), points, error)


def derivative_checks() -> list[DerivativeCheck]:
    """Exercises 2.6 and 2.7: sigmoid' and phi' against the tape (phi built from TensorFlow ops, not ours)."""
    import tensorflow as tf

    return [
        check_derivative("sigmoid", "s(v) * (1 - s(v))", tf.sigmoid, sigmoid_prime),
        check_derivative("v / sqrt(1 + v^2)", "(1 + v^2)^(-3/2)", lambda x: x / tf.sqrt(1.0 + x * x), phi_prime),
    ]


# ---------------------------------------------------------------- the answers, printed and in TensorBoard
def run(run_dir: str | Path) -> str:
    """Exercises 2.4, 2.6, 2.7: the picture, the ranges table and the derivative checks, as markdown."""
    from tfbench.reporting import summaries
    from tfbench.reporting.tables import markdown_table

    picture = draw(run_dir)
    span = f"[{MEASURE_RANGE[0]:g}, {MEASURE_RANGE[1]:g}]"
    range_table = markdown_table(
        ["activation", "formula", "range", f"min on {span}", f"max on {span}", "f(0)", "f'(0) (tape)"],
        [[r.name, r.formula, r.stated, f"{r.measured_min:.6g}", f"{r.measured_max:.6g}", f"{r.at_zero:g}",
          f"{r.slope_at_zero:g}"] for r in ranges()])
    checks = derivative_checks()
    check_table = markdown_table(
        ["function", "derivative (closed form)", "value at 0", "points checked", "max |closed form - tape|"],
        [[c.name, c.closed_form, f"{c.at_zero:g}", c.points, f"{c.max_abs_error:.2e}"] for c in checks])
    summaries.write_text(run_dir, {"activations/ranges": range_table, "activations/derivatives": check_table})
    return "\n\n".join([range_table, check_table, f"picture: {picture}"])
