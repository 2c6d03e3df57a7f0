"""One neuron with two inputs, the logic gates it can learn, and the one it cannot (exercise 1.3; 2.2).

A perceptron computes ``y = step(w1*x1 + w2*x2 + b)``: it answers 1 on one side of the line
``w1*x1 + w2*x2 + b = 0`` and 0 on the other, so it can learn a gate exactly when a line separates
the gate's 1s from its 0s.  Rosenblatt's learning rule nudges the line towards every point it gets
wrong (``w += lr * (target - y) * x``, ``b += lr * (target - y)``) and, when such a line exists, stops
after finitely many mistakes (the perceptron convergence theorem).  The rule is written here in
NumPy, by hand, because the rule is the point of the exercise.

AND, OR and NAND are separable.  XOR is not: outputs 1 at (0, 1) and (1, 0) need ``w2 + b > 0`` and
``w1 + b > 0``; 0 at (0, 0) and (1, 1) need ``b <= 0`` and ``w1 + w2 + b <= 0``.  Adding the first two
gives ``w1 + w2 + 2b > 0``, so ``w1 + w2 + b > -b >= 0``: a contradiction.  The rule then never stops
making mistakes, and :func:`train_neuron` reports it as not converged.  Two layers are enough: a
hidden layer bends the boundary, and :func:`train_xor_mlp` trains a 2-4-1 MLP in TensorFlow that
gets all four XOR points right.

Exercise 2.2 (:func:`mlp_parameters`): the trainable parameters of a 33-512-10 MLP, counted by
tfbench's own per-layer counter (:mod:`tfbench.models.counting`) and by Keras: 33*512 + 512 weights
and biases into the hidden layer, 512*10 + 10 into the output, 22,538 in all.

Run: ``python -m tfbench.basics perceptron`` and ``python -m tfbench.basics params``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
GATES: dict[str, tuple[int, int, int, int]] = {  # outputs at (0,0), (0,1), (1,0), (1,1)
    "AND": (0, 0, 0, 1),
    "OR": (0, 1, 1, 1),
    "NAND": (1, 1, 1, 0),
    "XOR": (0, 1, 1, 0),
}
MAX_EPOCHS = 100


@dataclass
class NeuronResult:
    """One neuron trained on one gate with the perceptron rule."""

    gate: str
    w: tuple[float, float]
    b: float
    epochs: int  # passes over the four points until one made no mistake (MAX_EPOCHS if never)
    converged: bool
    outputs: tuple[int, int, int, int]  # the trained neuron's answers at the four inputs

    @property
    def correct(self) -> int:
        """How many of the four points the trained neuron gets right."""
        return sum(int(o == t) for o, t in zip(self.outputs, GATES[self.gate]))

    def line(self) -> str:
        """The decision line as an equation."""
        return f"{self.w[0]:+g}*x1 {self.w[1]:+g}*x2 {self.b:+g} = 0"


def step(z: np.ndarray) -> np.ndarray:
    """The perceptron's activation: 1 where z > 0, else 0."""
    return (z > 0).astype(np.int64)


def train_neuron(gate: str, lr: float = 1.0, max_epochs: int = MAX_EPOCHS) -> NeuronResult:
    """Rosenblatt's rule from w = 0, b = -0.5, the four points in a fixed order, until an epoch without a mistake.

    With ``lr = 1`` the weights stay whole numbers and the bias a half, so no input lies on the line.
    """
    if gate not in GATES:
        raise ValueError(f"no gate {gate!r}; expected one of {', '.join(GATES)}")
    targets = np.array(GATES[gate])
    w, b = np.zeros(2), -0.5
    converged, epoch = False, 0
    while epoch < max_epochs and not converged:
        epoch += 1
        mistakes = 0
        for x, t in zip(INPUTS, targets):
            y = int(step(np.array(w @ x + b)))
            if y != t:
                w += lr * (t - y) * x
                b += lr * (t - y)
                mistakes += 1
        converged = mistakes == 0
    outputs = tuple(int(v) for v in step(INPUTS @ w + b))
    return NeuronResult(gate, (float(w[0]), float(w[1])), float(b), epoch, converged, outputs)


@dataclass
class XorMLP:
    """A 2-H-1 MLP trained on XOR: its weights, its answers and its loss curve."""

    weights: dict[str, np.ndarray]
    outputs: tuple[int, int, int, int]
    probabilities: tuple[float, ...]
    losses: list[float]

    @property
    def correct(self) -> int:
        """How many of the four XOR points the MLP gets right."""
        return sum(int(o == t) for o, t in zip(self.outputs, GATES["XOR"]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(output = 1) at the points ``x`` (N, 2), in NumPy from the trained weights."""
        hidden = np.tanh(x @ self.weights["w1"] + self.weights["b1"])
        return 1.0 / (1.0 + np.exp(-(hidden @ self.weights["w2"] + self.weights["b2"])))[:, 0]


def train_xor_mlp(hidden: int = 4, steps: int = 500, lr: float = 0.05, seed: int = 0) -> XorMLP:
    """Train ``tanh`` hidden units and a sigmoid output on XOR with Adam and cross-entropy (TensorFlow)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    limit1, limit2 = np.sqrt(6.0 / (2 + hidden)), np.sqrt(6.0 / (hidden + 1))
    w1 = tf.Variable(rng.uniform(-limit1, limit1, (2, hidden)), dtype=tf.float64, name="w1")
    b1 = tf.Variable(np.zeros(hidden), dtype=tf.float64, name="b1")
    w2 = tf.Variable(rng.uniform(-limit2, limit2, (hidden, 1)), dtype=tf.float64, name="w2")
    b2 = tf.Variable(np.zeros(1), dtype=tf.float64, name="b2")
    variables = [w1, b1, w2, b2]
    x = tf.constant(INPUTS)
    t = tf.constant(np.array(GATES["XOR"], np.float64)[:, None])
    optimizer = tf.keras.optimizers.Adam(lr)

    @tf.function
    def train_step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.tanh(x @ w1 + b1) @ w2 + b2
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    losses = [float(train_step()) for _ in range(steps)]
    weights = {v.name.split(":")[0]: v.numpy() for v in variables}
    result = XorMLP(weights, (0, 0, 0, 0), (), losses)
    p = result.predict(INPUTS)
    result.outputs = tuple(int(v > 0.5) for v in p)
    result.probabilities = tuple(float(v) for v in p)
    return result


def draw(neurons: list[NeuronResult], mlp: XorMLP, run_dir: str | Path) -> Path:
    """One panel per gate with its points and the neuron's line, and the MLP's XOR regions; PNG + TensorBoard."""
    from tfbench.backprop import pictures

    fig, axes = pictures.new_figure(len(neurons) + 1, 1, size=(3.2, 3.2))
    grid = np.linspace(-0.5, 1.5, 201)
    for ax, result in zip(axes[0], neurons):
        ax.set_title(f"{result.gate}: {'separated' if result.converged else 'no line'} ({result.correct}/4)")
        w1, w2 = result.w
        if w2 != 0:
            ax.plot(grid, -(w1 * grid + result.b) / w2, "k-")
        elif w1 != 0:
            ax.axvline(-result.b / w1, color="k")
    xx, yy = np.meshgrid(grid, grid)
    regions = mlp.predict(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    axes[0][-1].contourf(xx, yy, regions > 0.5, levels=[-0.5, 0.5, 1.5], colors=["#ddd", "#9cf"])
    axes[0][-1].set_title(f"XOR by a 2-{mlp.weights['w1'].shape[1]}-1 MLP ({mlp.correct}/4)")
    for ax, gate in zip(axes[0], [r.gate for r in neurons] + ["XOR"]):
        targets = np.array(GATES[gate])
        ax.scatter(INPUTS[:, 0], INPUTS[:, 1], c=["tab:blue" if t else "white" for t in targets],
                   edgecolors="k", s=120, zorder=3)
        ax.set_xlim(-0.5, 1.5)
        ax.set_ylim(-0.5, 1.5)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.tight_layout()
    return pictures.save(fig, run_dir, "decision_lines")


# ---------------------------------------------------------------- exercise 2.2
@dataclass
class ParameterCount:
    """The trainable parameters of one MLP, three ways."""

    widths: tuple[int, ...]
    by_hand: int  # sum of in*out + out over the layers
    tfbench: int  # tfbench.models.counting on the Keras model
    keras: int  # Keras' own count_params()
    per_layer: list[tuple[str, int]]


def mlp_parameters(widths: tuple[int, ...] = (33, 512, 10)) -> ParameterCount:
    """Count the trainable parameters of a dense MLP with these layer widths (input first)."""
    import keras

    from tfbench.models.counting import count_model

    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise ValueError(f"an MLP needs an input width and at least one layer width, all positive; got {widths}")
    inputs = keras.Input((widths[0],), name="input")
    x = inputs
    for i, width in enumerate(widths[1:]):
        last = i == len(widths) - 2
        x = keras.layers.Dense(width, activation=None if last else "sigmoid",
                               name="output" if last else f"hidden{i + 1}")(x)
    model = keras.Model(inputs, x, name="mlp_" + "_".join(map(str, widths)))
    counts = count_model(model)
    by_hand = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return ParameterCount(tuple(widths), by_hand, counts.total("params"), trainable,
                          [(layer.name, layer.params) for layer in counts.layers])


# ---------------------------------------------------------------- the answers, printed and in TensorBoard
def run(run_dir: str | Path) -> str:
    """Exercise 1.3: train the neuron on every gate and the MLP on XOR; draw them; the answer as markdown."""
    from tfbench.reporting import summaries
    from tfbench.reporting.tables import markdown_table

    neurons = [train_neuron(gate) for gate in GATES]
    mlp = train_xor_mlp()
    picture = draw(neurons, mlp, run_dir)
    rows = [[r.gate, "".join(map(str, GATES[r.gate])), r.line(), "".join(map(str, r.outputs)), f"{r.correct}/4",
             f"yes, after {r.epochs} epochs" if r.converged else f"no, still wrong after {r.epochs} epochs"]
            for r in neurons]
    table = markdown_table(["gate", "targets at 00 01 10 11", "decision line", "neuron says", "right",
                            "perceptron rule converged"], rows)
    xor = (f"XOR by a 2-{mlp.weights['w1'].shape[1]}-1 MLP (tanh, sigmoid output, Adam, {len(mlp.losses)} steps): "
           f"says {''.join(map(str, mlp.outputs))}, {mlp.correct}/4 right, "
           f"P(1) = {', '.join(f'{p:.3f}' for p in mlp.probabilities)}, final loss {mlp.losses[-1]:.4f}")
    text = "\n\n".join([table, xor, f"picture: {picture}"])
    summaries.write_text(run_dir, {"perceptron": text})
    return text


def run_parameters(run_dir: str | Path, widths: tuple[int, ...] = (33, 512, 10)) -> str:
    """Exercise 2.2: the parameter count, three ways, as markdown (also a TensorBoard Text card)."""
    from tfbench.reporting import summaries
    from tfbench.reporting.tables import markdown_table

    count = mlp_parameters(widths)
    rows = [[name, f"{n:,}"] for name, n in count.per_layer]
    text = "\n\n".join([
        markdown_table(["layer", "parameters"], rows),
        f"{'-'.join(map(str, widths))} MLP: {count.tfbench:,} trainable parameters by tfbench's counter, "
        f"{count.keras:,} by Keras, {count.by_hand:,} by hand (sum of in*out + out)"])
    summaries.write_text(run_dir, {"parameters": text})
    return text
