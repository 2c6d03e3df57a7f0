"""Momentum in [0, 1] and in [-1, 0] on one fixed problem (exercise 2.9).

Gradient descent with momentum keeps a velocity: ``u <- mu * u - lr * grad``, ``w <- w + u``.  With
``mu`` in (0, 1) the steps of consistent gradients add up (on a long slope the velocity tends to
``lr * grad / (1 - mu)``: ten times plain gradient descent's step at ``mu = 0.9``), and steps that
flip sign cancel.  With ``mu`` in (-1, 0) each step pushes *against* the previous one: the
effective step shrinks to ``lr / (1 - mu)`` (a third smaller at ``mu = -0.5``) and the update takes
a component that changes sign every step, so near ``mu = -1`` the loss goes up and down.

Keras' ``SGD`` refuses a momentum outside [0, 1], so the update is written here by hand, in
TensorFlow, on the problem of :mod:`tfbench.backprop.adder` (the 8-32-5 adder MLP on its 192
training pairs, full batch, no L2): the same initial weights, the same learning rate, only ``mu``
changes.  :func:`describe` turns the curves into sentences: steps to reach a loss, how often the loss
went up, the final loss.

Run: ``python -m tfbench.basics momentum``; the curves are the TensorBoard scalar
``momentum/training_loss``, one run per ``mu``, on one chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MOMENTA = (-0.9, -0.5, 0.0, 0.5, 0.9)
LEARNING_RATE = 0.5
STEPS = 500
TARGET_LOSS = 1.0


@dataclass
class Curve:
    """The training loss of one run, before each step."""

    mu: float
    losses: list[float]

    def steps_to(self, target: float) -> int | None:
        """The first step whose loss is below ``target`` (None: never)."""
        below = np.flatnonzero(np.asarray(self.losses) < target)
        return int(below[0]) if len(below) else None

    @property
    def rise_fraction(self) -> float:
        """How often the loss went up from one step to the next."""
        return float(np.mean(np.diff(self.losses) > 0))


def train(mu: float, lr: float = LEARNING_RATE, steps: int = STEPS, seed: int = 0) -> Curve:
    """Full-batch gradient descent with momentum ``mu`` (any value in [-1, 1]) on the adder MLP."""
    import tensorflow as tf

    from tfbench.backprop import adder

    if not -1.0 <= mu <= 1.0:
        raise ValueError(f"momentum must be in [-1, 1], got {mu}")
    data = adder.adder_data(seed=seed)
    weights = [tf.Variable(w) for w in adder.initial_weights(seed=seed)]
    velocities = [tf.Variable(tf.zeros_like(w)) for w in weights]
    x, y = tf.constant(data.x[data.train]), tf.constant(data.y[data.train])

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = adder.tf_loss_fn(weights, x, y, l2=0.0)
        for w, u, g in zip(weights, velocities, tape.gradient(loss, weights)):
            u.assign(mu * u - lr * g)  # the velocity: mu times the last step, minus the gradient step
            w.assign_add(u)
        return loss

    return Curve(mu, [float(step()) for _ in range(steps)])


def describe(curves: list[Curve], target: float = TARGET_LOSS) -> list[str]:
    """What the curves show, in words, every number measured from them."""
    plain = next((c for c in curves if c.mu == 0.0), None)
    if plain is None:
        raise ValueError("describe needs the curve of mu = 0 (plain gradient descent) to compare with")
    base = plain.steps_to(target)
    sentences = [f"plain gradient descent (mu = 0) reaches loss {target:g} after {base} steps"
                 if base is not None else f"plain gradient descent (mu = 0) never reaches loss {target:g}"]
    for c in curves:
        if c.mu == 0.0:
            continue
        n = c.steps_to(target)
        if n is None:
            when = f"never reaches loss {target:g} in {len(c.losses)} steps"
        elif base is None:
            when = f"reaches loss {target:g} after {n} steps"
        elif n <= base:
            when = f"reaches loss {target:g} after {n} steps, {base / max(n, 1):.1f}x faster"
        else:
            when = f"reaches loss {target:g} after {n} steps, {n / max(base, 1):.1f}x slower"
        wobble = (f"the loss went up in {c.rise_fraction:.0%} of the steps (it oscillates)" if c.rise_fraction > 0.05
                  else f"the loss went up in {c.rise_fraction:.0%} of the steps")
        sentences.append(f"mu = {c.mu:+g} {when} than plain gradient descent (the effective step lr/(1 - mu) "
                         f"is {1 / (1 - c.mu):.2f}x); {wobble}; final loss {c.losses[-1]:.4f} "
                         f"(plain: {plain.losses[-1]:.4f})")
    return sentences


def run(run_dir: str | Path, momenta: tuple[float, ...] = MOMENTA, steps: int = STEPS) -> str:
    """Exercise 2.9: one curve per momentum as TensorBoard scalars, the table and the words as markdown."""
    import tensorflow as tf

    from tfbench.reporting import summaries
    from tfbench.reporting.tables import markdown_table

    curves = [train(mu, steps=steps) for mu in momenta]
    for c in curves:
        with tf.summary.create_file_writer(str(Path(run_dir) / f"mu_{c.mu:+g}")).as_default():
            for i, value in enumerate(c.losses):
                tf.summary.scalar("momentum/training_loss", value, step=i)
    rows = [[f"{c.mu:+g}", c.steps_to(TARGET_LOSS) if c.steps_to(TARGET_LOSS) is not None else "never",
             f"{c.rise_fraction:.0%}", f"{c.losses[len(c.losses) // 5]:.4f}", f"{c.losses[-1]:.4f}"]
            for c in curves]
    table = markdown_table(["momentum mu", f"steps to loss < {TARGET_LOSS:g}", "steps where the loss rose",
                            f"loss at step {steps // 5}", f"loss at step {steps}"], rows)
    words = describe(curves)
    text = "\n\n".join([f"the adder MLP (8-32-5, 192 pairs, full batch), lr {LEARNING_RATE}, {steps} steps, "
                        f"u <- mu u - lr grad, w <- w + u:", table, *[f"- {s}" for s in words]])
    summaries.write_text(run_dir, {"momentum": text})
    return text
