"""A 4-bit adder learned by an MLP, in TensorFlow and in NumPy with a hand-written backward pass (2.11, 2.12).

The task: two 4-bit numbers in (8 input bits), their 5-bit sum out.  All 16 x 16 = 256 input pairs
exist; a fixed, seeded split keeps :data:`TEST_PAIRS` of them out of training, and every answer is
measured on those held-out pairs, bit by bit and as whole sums (all five bits right).

The network: 8 inputs (bits as -1/+1) -> :data:`HIDDEN` tanh units -> 5 sigmoid outputs, one per sum
bit, trained full-batch on the summed binary cross-entropy of the five bits with a small L2 penalty on
the weights (among the many networks that fit the 192 training pairs it prefers small weights; over
initial-weight seeds 0 to 5 it lifts the held-out sums right from 95.3-96.9% to 96.9-98.4%), by Adam.

Two implementations of the *same* network, from the same initial weights:

- TensorFlow: variables, the loss, ``tf.GradientTape`` for the gradients, ``keras.optimizers.Adam``;
- NumPy (:class:`NumpyMLP`): the forward pass and the backward pass written by hand (that is the
  exercise), and Adam written by hand with Keras' formula.  The backward pass is the chain rule,
  layer by layer from the output: with sigmoid outputs and cross-entropy the output error is simply
  ``(o - y) / N``; it goes back through ``W2`` and the tanh derivative ``1 - h^2``.

Both run in float64, so the gradients can be compared to round-off (:func:`gradient_difference`),
and the two training runs agree to round-off step by step (1e-12 after 20 steps, tested).  Over
thousands of steps the round-off of different summation orders grows, most where Adam divides a
near-zero gradient by its own running size, so the final weights differ slightly (about 5e-4 here)
while the answers are the same.

Run: ``python -m tfbench.basics adder``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BITS = 4
TEST_PAIRS = 64  # of 256; the other 192 train
HIDDEN = 32
STEPS = 4000
LEARNING_RATE = 0.01
L2 = 3e-3
SEED = 0
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras' Adam defaults


def to_bits(values: np.ndarray, n: int) -> np.ndarray:
    """Little-endian bits: column i is bit i of each value."""
    return ((np.asarray(values)[:, None] >> np.arange(n)) & 1).astype(np.float64)


@dataclass
class AdderData:
    """All 256 pairs and the fixed split."""

    a: np.ndarray  # (256,) first operand
    b: np.ndarray  # (256,) second operand
    x: np.ndarray  # (256, 8) bits of a then bits of b, as -1/+1
    y: np.ndarray  # (256, 5) bits of a + b, 0/1
    train: np.ndarray  # indices
    test: np.ndarray


def adder_data(test_pairs: int = TEST_PAIRS, seed: int = SEED) -> AdderData:
    """Every pair (a, b) of 4-bit numbers, split by a seeded permutation into train and held-out pairs."""
    if not 0 < test_pairs < 256:
        raise ValueError(f"test_pairs must be between 1 and 255, got {test_pairs}")
    a, b = (v.ravel() for v in np.meshgrid(np.arange(2**BITS), np.arange(2**BITS), indexing="ij"))
    x = 2.0 * np.hstack([to_bits(a, BITS), to_bits(b, BITS)]) - 1.0
    y = to_bits(a + b, BITS + 1)
    order = np.random.default_rng(seed).permutation(len(a))
    return AdderData(a, b, x, y, np.sort(order[test_pairs:]), np.sort(order[:test_pairs]))


def initial_weights(hidden: int = HIDDEN, seed: int = SEED) -> list[np.ndarray]:
    """[W1 (8, hidden), b1, W2 (hidden, 5), b2]: Glorot-uniform kernels, zero biases, float64."""
    rng = np.random.default_rng(seed)
    n_in, n_out = 2 * BITS, BITS + 1
    l1, l2 = np.sqrt(6.0 / (n_in + hidden)), np.sqrt(6.0 / (hidden + n_out))
    return [rng.uniform(-l1, l1, (n_in, hidden)), np.zeros(hidden), rng.uniform(-l2, l2, (hidden, n_out)),
            np.zeros(n_out)]


# ---------------------------------------------------------------- NumPy, by hand
def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z), without overflow for large negative z."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class NumpyMLP:
    """The 8-H-5 network with its forward pass, backward pass and Adam written out in NumPy."""

    def __init__(self, weights: list[np.ndarray], l2: float = L2):
        self.params = [w.copy() for w in weights]
        self.l2 = l2
        self.m = [np.zeros_like(w) for w in weights]  # Adam's first moments
        self.v = [np.zeros_like(w) for w in weights]  # and second moments
        self.step = 0

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hidden activations h, output logits z, output probabilities o)."""
        w1, b1, w2, b2 = self.params
        h = np.tanh(x @ w1 + b1)
        z = h @ w2 + b2
        return h, z, sigmoid(z)

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """Binary cross-entropy summed over the 5 bits, averaged over the pairs, plus L2/2 * |kernels|^2."""
        _, z, _ = self.forward(x)
        bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))  # = -y log o - (1 - y) log(1 - o), stably
        w1, _, w2, _ = self.params
        return float(bce.sum(axis=1).mean() + 0.5 * self.l2 * (np.sum(w1 * w1) + np.sum(w2 * w2)))

    def gradients(self, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """The backward pass: d loss / d [W1, b1, W2, b2], by the chain rule from the output back."""
        w1, _, w2, _ = self.params
        h, _, o = self.forward(x)
        dz = (o - y) / len(x)  # d loss / d logits: sigmoid and cross-entropy together
        dw2 = h.T @ dz + self.l2 * w2
        db2 = dz.sum(axis=0)
        dh = dz @ w2.T  # back through the output layer's weights
        da = dh * (1.0 - h * h)  # back through tanh: tanh' = 1 - tanh^2
        dw1 = x.T @ da + self.l2 * w1
        db1 = da.sum(axis=0)
        return [dw1, db1, dw2, db2]

    def adam_step(self, grads: list[np.ndarray], lr: float = LEARNING_RATE) -> None:
        """One Adam update, with the formula of ``keras.optimizers.Adam``, to the last bit.

        Keras keeps the learning rate in a float32 variable and casts ``beta_1``, ``beta_2`` for the
        bias correction through float32 too, even for float64 weights: 0.999 becomes 0.99900001287,
        which changes every step by 6.7e-6 of itself.  The same roundings here make the NumPy run
        follow Keras' to round-off instead of drifting apart.
        """
        self.step += 1
        lr, beta_1, beta_2 = (float(np.float32(v)) for v in (lr, BETA_1, BETA_2))
        alpha = lr * np.sqrt(1.0 - beta_2**self.step) / (1.0 - beta_1**self.step)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m += (g - m) * (1.0 - BETA_1)
            v += (g * g - v) * (1.0 - BETA_2)
            p -= m * alpha / (np.sqrt(v) + EPSILON)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The five sum bits (0/1) for each row of ``x``."""
        return (self.forward(x)[2] > 0.5).astype(np.float64)


def train_numpy(data: AdderData, weights: list[np.ndarray], steps: int = STEPS) -> tuple[NumpyMLP, list[float]]:
    """Full-batch Adam on the training pairs; the loss before each step."""
    net = NumpyMLP(weights)
    x, y = data.x[data.train], data.y[data.train]
    losses = []
    for _ in range(steps):
        losses.append(net.loss(x, y))
        net.adam_step(net.gradients(x, y))
    return net, losses


# ---------------------------------------------------------------- TensorFlow
def tf_loss_fn(variables: list, x, y, l2: float = L2):
    """The same loss in TensorFlow ops (``variables`` = [W1, b1, W2, b2])."""
    import tensorflow as tf

    w1, b1, w2, b2 = variables
    logits = tf.tanh(x @ w1 + b1) @ w2 + b2
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
    return tf.reduce_mean(tf.reduce_sum(bce, axis=1)) + 0.5 * l2 * (tf.reduce_sum(w1 * w1) + tf.reduce_sum(w2 * w2))


def tf_gradients(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """The tape's gradients of the same loss at ``weights``."""
    import tensorflow as tf

    variables = [tf.Variable(w) for w in weights]
    with tf.GradientTape() as tape:
        loss = tf_loss_fn(variables, tf.constant(x), tf.constant(y))
    return [g.numpy() for g in tape.gradient(loss, variables)]


def train_tensorflow(data: AdderData, weights: list[np.ndarray], steps: int = STEPS
                     ) -> tuple[list[np.ndarray], list[float]]:
    """Full-batch ``keras.optimizers.Adam`` on the training pairs; final weights and the loss before each step."""
    import keras
    import tensorflow as tf

    variables = [tf.Variable(w, name=name) for w, name in zip(weights, ("w1", "b1", "w2", "b2"))]
    optimizer = keras.optimizers.Adam(LEARNING_RATE, beta_1=BETA_1, beta_2=BETA_2, epsilon=EPSILON)
    x, y = tf.constant(data.x[data.train]), tf.constant(data.y[data.train])

    @tf.function
    def train_step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf_loss_fn(variables, x, y)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    losses = [float(train_step()) for _ in range(steps)]
    return [v.numpy() for v in variables], losses


# ---------------------------------------------------------------- checks and scores
def gradient_difference(weights: list[np.ndarray], data: AdderData) -> float:
    """Largest |NumPy gradient - TensorFlow gradient| over every parameter, on the training pairs."""
    x, y = data.x[data.train], data.y[data.train]
    ours = NumpyMLP(weights).gradients(x, y)
    theirs = tf_gradients(weights, x, y)
    return max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs))


@dataclass
class Score:
    """One adder on the held-out pairs."""

    name: str
    bit_accuracy: list[float]  # per sum bit, bit 0 (least significant) first
    sum_accuracy: float  # all five bits right
    wrong: list[str]  # "a + b = predicted (true)" for every held-out pair it gets wrong
    final_loss: float


def score(name: str, weights: list[np.ndarray], data: AdderData, final_loss: float) -> Score:
    """Bit and whole-sum accuracy of the network with ``weights`` on the held-out pairs."""
    predicted = NumpyMLP(weights).predict(data.x[data.test])
    truth = data.y[data.test]
    right_bits = predicted == truth
    wrong = []
    for i in np.flatnonzero(~right_bits.all(axis=1)):
        value = int(predicted[i] @ (2 ** np.arange(BITS + 1)))
        a, b = int(data.a[data.test][i]), int(data.b[data.test][i])
        wrong.append(f"{a} + {b} = {value} ({a + b})")
    return Score(name, right_bits.mean(axis=0).tolist(), float(right_bits.all(axis=1).mean()), wrong, final_loss)


@dataclass
class AdderResult:
    """Exercise 2.11/2.12: both adders, the gradient check, and how far apart the two runs end."""

    gradient_difference: float  # at the initial weights
    tensorflow: Score
    numpy: Score
    weight_difference: float  # largest |W_tf - W_numpy| after training
    losses: dict[str, list[float]]
    train_pairs: int
    test_pairs: int


def compare(steps: int = STEPS, seed: int = SEED) -> AdderResult:
    """Check the hand-written gradients, then train both adders from the same weights and score them."""
    data = adder_data(seed=seed)
    weights = initial_weights(seed=seed)
    difference = gradient_difference(weights, data)
    tf_weights, tf_losses = train_tensorflow(data, weights, steps)
    net, np_losses = train_numpy(data, weights, steps)
    spread = max(float(np.max(np.abs(a - b))) for a, b in zip(tf_weights, net.params))
    return AdderResult(difference, score("TensorFlow", tf_weights, data, tf_losses[-1]),
                       score("NumPy (hand-written backward pass)", net.params, data, np_losses[-1]), spread,
                       {"tensorflow": tf_losses, "numpy": np_losses}, len(data.train), len(data.test))


def run(run_dir: str | Path, steps: int = STEPS) -> str:
    """Exercises 2.11 and 2.12 as markdown; loss curves as TensorBoard scalars, the table as a Text card."""
    import tensorflow as tf

    from tfbench.reporting import summaries
    from tfbench.reporting.tables import markdown_table

    result = compare(steps)
    for name, losses in result.losses.items():
        with tf.summary.create_file_writer(str(Path(run_dir) / name)).as_default():
            for i, value in enumerate(losses):
                if i % 10 == 0 or i == len(losses) - 1:
                    tf.summary.scalar("adder/training_loss", value, step=i)
    header = ["adder", *[f"bit {i}" for i in range(BITS + 1)], "whole sums right", "final training loss"]
    rows = [[s.name, *[f"{a:.3f}" for a in s.bit_accuracy], f"{s.sum_accuracy:.3f}", f"{s.final_loss:.5f}"]
            for s in (result.tensorflow, result.numpy)]
    text = "\n\n".join([
        f"4-bit adder, 8-{HIDDEN}-5 MLP (tanh, sigmoid outputs), {result.train_pairs} training pairs, "
        f"{result.test_pairs} held-out pairs, {steps} full-batch Adam steps (lr {LEARNING_RATE}, L2 {L2}), float64.",
        f"hand-written gradients vs tf.GradientTape at the initial weights: largest difference "
        f"{result.gradient_difference:.2e}",
        "held-out pairs, fraction right:", markdown_table(header, rows),
        f"after training, the two networks' weights differ by at most {result.weight_difference:.2e} "
        "(round-off of different summation orders, grown over the steps)",
        "held-out sums TensorFlow gets wrong: " + (", ".join(result.tensorflow.wrong) or "none"),
        "held-out sums NumPy gets wrong: " + (", ".join(result.numpy.wrong) or "none")])
    summaries.write_text(run_dir, {"adder": text})
    return text
