"""Sparse training (exercise 5.12): magnitude pruning to a target sparsity on a polynomial schedule, in
Keras (masks applied after each step) and in a NumPy-only MLP, with the accuracy lost against the
dense model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tfbench.data import mnist
from tfbench.models.counting import flat_layers
from tfbench.plumbing.errors import UserError

#: Keras models from the registry (:mod:`tfbench.models.registry`) that pruning is tried on, plus the NumPy network.
KERAS_MODELS = ("lenet5", "mlp")


MODELS = (*KERAS_MODELS, "numpy")


@dataclass(frozen=True)
class Schedule:
    """Polynomial sparsity schedule: ``initial`` at ``begin_step`` to ``final`` at ``end_step``."""

    final: float = 0.5
    begin_step: int = 0
    end_step: int = 1000
    initial: float = 0.0
    power: int = 3
    frequency: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.initial <= self.final < 1.0:
            raise UserError(f"sparsity must satisfy 0 <= initial <= final < 1, got {self.initial}, {self.final}")
        if self.end_step <= self.begin_step or self.frequency < 1:
            raise UserError(f"need begin_step < end_step and frequency >= 1, got {self.begin_step}, "
                            f"{self.end_step}, {self.frequency}")

    def sparsity(self, step: int) -> float:
        """Target sparsity at ``step``."""
        progress = min(1.0, max(0.0, (step - self.begin_step) / (self.end_step - self.begin_step)))
        return self.final + (self.initial - self.final) * (1.0 - progress) ** self.power

    def should_update(self, step: int) -> bool:
        """Whether masks are recomputed at ``step`` (every ``frequency`` steps inside the ramp, and at its end)."""
        return self.begin_step <= step <= self.end_step and (
            (step - self.begin_step) % self.frequency == 0 or step == self.end_step)


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """A 0/1 float32 mask zeroing exactly ``floor(sparsity * size)`` entries of smallest magnitude."""
    flat = np.abs(np.asarray(weights)).ravel()
    k = int(np.floor(sparsity * flat.size))
    mask = np.ones(flat.size, np.float32)
    if k:
        mask[np.argpartition(flat, k - 1)[:k]] = 0.0
    return mask.reshape(np.shape(weights))


def sparsity_of(weights: np.ndarray) -> float:
    """Fraction of exact zeros."""
    weights = np.asarray(weights)
    return float(np.mean(weights == 0))


# ----------------------------------------------------------------- TensorFlow / Keras
#: Keras layer classes whose kernels are pruned: conv (plain, depthwise, separable) and fc (Dense, EinsumDense).
PRUNABLE_TYPES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "EinsumDense")


#: The names of the kernel variables of those layers (a SeparableConv2D has two).
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def prunable_layers(model) -> list:
    """The conv and fc layers whose kernels get a mask (:data:`PRUNABLE_TYPES`), in nested models too."""
    import keras

    types = tuple(getattr(keras.layers, name) for name in PRUNABLE_TYPES)
    return [layer for layer in flat_layers(model) if isinstance(layer, types)]


def layer_kernels(layer) -> list[tuple[str, object]]:
    """``(label, variable)`` for each float kernel of ``layer``: the layer's name, or ``name/depthwise_kernel``.

    Biases, norms' scales and offsets, and embeddings are not kernels; a quantized (integer) kernel is left out.
    """
    kernels = [w for w in layer.weights if w.name in KERNEL_NAMES and "float" in str(w.dtype)]
    return [(layer.name if len(kernels) == 1 else f"{layer.name}/{w.name}", w) for w in kernels]


def skipped_layers(model) -> list[str]:
    """``name (Type)`` of each layer holding weights of two or more dimensions that are not pruned.

    Embeddings, recurrent and attention layers, and conv layers outside :data:`PRUNABLE_TYPES`
    (Conv1D, Conv3D, Conv2DTranspose) keep their weights dense; so does a quantized kernel.
    """
    pruned = {id(v) for layer in prunable_layers(model) for _, v in layer_kernels(layer)}
    return [f"{layer.name} ({type(layer).__name__})" for layer in flat_layers(model)
            if any(len(w.shape) >= 2 and id(w) not in pruned for w in layer.weights)]


class Pruner:
    """A non-trainable mask variable beside each conv/fc kernel of a Keras model."""

    def __init__(self, model, schedule: Schedule):
        import tensorflow as tf

        self.schedule = schedule
        named = [pair for layer in prunable_layers(model) for pair in layer_kernels(layer)]
        self.names = [name for name, _ in named]
        self.kernels = [kernel for _, kernel in named]
        self.masks = [tf.Variable(tf.ones(k.shape, tf.float32), trainable=False, name=f"{name.replace('/', '_')}_mask")
                      for name, k in named]

    def update_masks(self, step: int) -> float:
        """Recompute the masks at the schedule's sparsity for ``step``, zero the pruned weights; return it."""
        target = self.schedule.sparsity(step)
        for kernel, mask in zip(self.kernels, self.masks):
            mask.assign(magnitude_mask(kernel.numpy(), target))
            kernel.assign(kernel * mask)
        return target

    def layer_sparsity(self) -> dict[str, float]:
        """Fraction of zeros in each pruned kernel."""
        return {name: sparsity_of(k.numpy()) for name, k in zip(self.names, self.kernels)}


def make_sparse_train_step(model, optimizer, pruner: Pruner):
    """A ``tf.function`` step: masked gradients, optimizer update, re-masked kernels."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    mask_of = {id(k): m for k, m in zip(pruner.kernels, pruner.masks)}

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, variables)
        grads = [g * mask_of[id(v)] if id(v) in mask_of else g for g, v in zip(grads, variables)]
        optimizer.apply(grads, variables)
        for kernel, mask in zip(pruner.kernels, pruner.masks):
            kernel.assign(kernel * mask)  # momentum moves pruned weights: put them back to zero
        return loss

    return train_step


@dataclass
class SparseResult:
    """One training run: final per-layer sparsity, test accuracy, loss per epoch."""

    model: str
    final_sparsity: float
    epochs: int
    accuracy: float
    layer_sparsity: dict[str, float]
    loss_curve: list[float] = field(default_factory=list)
    sparsity_curve: list[float] = field(default_factory=list)


def _model_and_inputs(name: str, data: mnist.DigitData, seed: int):
    from tfbench import models

    models.registry.check_name(name, KERAS_MODELS)
    if name == "lenet5":
        return models.get("lenet5", seed=seed, activation="relu"), mnist.pad_to_32(data.x_train), \
            mnist.pad_to_32(data.x_test)
    return models.get(name, seed=seed), data.x_train, data.x_test


def train_keras(name: str, data: mnist.DigitData, *, final_sparsity: float = 0.5, epochs: int = 12,
                batch_size: int = 64, ramp_fraction: float = 0.6, learning_rate: float = 1e-3,
                seed: int = 0) -> SparseResult:
    """Train LeNet-5 or the MLP with the pruning schedule (``final_sparsity=0``: the dense baseline)."""
    import keras

    keras.utils.set_random_seed(seed)
    model, x_train, x_test = _model_and_inputs(name, data, seed)
    steps_per_epoch = -(-len(x_train) // batch_size)
    total = epochs * steps_per_epoch
    schedule = Schedule(final=final_sparsity, end_step=max(1, int(ramp_fraction * total)),
                        frequency=max(1, steps_per_epoch // 4))
    pruner = Pruner(model, schedule)
    step_fn = make_sparse_train_step(model, keras.optimizers.Adam(learning_rate), pruner)
    rng = np.random.default_rng(seed)
    result = SparseResult(name, final_sparsity, epochs, 0.0, {})
    step = 0
    from tqdm import tqdm

    for _ in tqdm(range(epochs), desc=f"{name} sparsity->{final_sparsity:.0%}", leave=False, disable=None):
        order = rng.permutation(len(x_train))
        losses = []
        for i in range(0, len(order), batch_size):
            if schedule.should_update(step):
                pruner.update_masks(step)
            batch = order[i:i + batch_size]
            losses.append(step_fn(x_train[batch], data.y_train[batch]))
            step += 1
        result.loss_curve.append(float(np.mean([float(v) for v in losses])))
        result.sparsity_curve.append(float(np.mean(list(pruner.layer_sparsity().values()))))
    logits = model.predict(x_test, batch_size=500, verbose=0)
    result.accuracy = float(np.mean(np.argmax(logits, axis=1) == data.y_test))
    result.layer_sparsity = pruner.layer_sparsity()
    return result


# ----------------------------------------------------------------- NumPy only
class NumpyMLP:
    """Exercise 5.12's 3-layer fully connected network in NumPy: ReLU hidden layers, softmax output.

    Forward and backward passes are written out by hand (that is the lesson); weights and
    their masks are plain arrays side by side.
    """

    def __init__(self, sizes: Sequence[int] = (784, 128, 64, 10), seed: int = 0):
        rng = np.random.default_rng(seed)
        self.weights = [rng.normal(0, np.sqrt(2.0 / i), (i, o)).astype(np.float32) for i, o in zip(sizes, sizes[1:])]
        self.biases = [np.zeros(o, np.float32) for o in sizes[1:]]
        self.masks = [np.ones_like(w) for w in self.weights]
        self.velocity = [np.zeros_like(p) for p in self.weights + self.biases]

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits and the activations the backward pass needs (input and each hidden output)."""
        acts = [x.reshape(len(x), -1)]
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = acts[-1] @ w + b
            if i < len(self.weights) - 1:
                acts.append(np.maximum(z, 0.0))
        return z, acts

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
        """Mean softmax cross-entropy and its gradients for every weight and bias (backpropagation)."""
        logits, acts = self.forward(x)
        shifted = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        n = len(x)
        loss = float(-np.mean(np.log(probs[np.arange(n), y] + 1e-12)))
        delta = probs
        delta[np.arange(n), y] -= 1.0
        delta /= n  # dLoss/dlogits
        grad_w, grad_b = [None] * len(self.weights), [None] * len(self.weights)
        for i in reversed(range(len(self.weights))):
            grad_w[i] = acts[i].T @ delta
            grad_b[i] = delta.sum(axis=0)
            if i:
                delta = (delta @ self.weights[i].T) * (acts[i] > 0)  # through ReLU
        return loss, grad_w, grad_b

    def sgd_step(self, x: np.ndarray, y: np.ndarray, lr: float = 0.05, momentum: float = 0.9) -> float:
        """One momentum-SGD step with masked gradients and re-masked weights; returns the loss."""
        loss, grad_w, grad_b = self.loss_and_grads(x, y)
        grad_w = [g * m for g, m in zip(grad_w, self.masks)]
        params = self.weights + self.biases
        for p, v, g in zip(params, self.velocity, grad_w + grad_b):
            v *= momentum
            v -= lr * g
            p += v
        for w, m in zip(self.weights, self.masks):
            w *= m  # momentum would move pruned weights: keep them at zero
        return loss

    def update_masks(self, sparsity: float) -> None:
        """Magnitude masks at ``sparsity`` for every weight matrix; pruned weights set to zero."""
        for i, w in enumerate(self.weights):
            self.masks[i] = magnitude_mask(w, sparsity)
            w *= self.masks[i]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices."""
        return np.argmax(self.forward(x)[0], axis=1)


def train_numpy(data: mnist.DigitData, *, final_sparsity: float = 0.5, epochs: int = 20, batch_size: int = 64,
                ramp_fraction: float = 0.6, seed: int = 0) -> SparseResult:
    """Train the NumPy network with the same schedule as the Keras models."""
    net = NumpyMLP(seed=seed)
    x_train = data.x_train.reshape(len(data.x_train), -1)
    steps_per_epoch = -(-len(x_train) // batch_size)
    schedule = Schedule(final=final_sparsity, end_step=max(1, int(ramp_fraction * epochs * steps_per_epoch)),
                        frequency=max(1, steps_per_epoch // 4))
    rng = np.random.default_rng(seed)
    result = SparseResult("numpy", final_sparsity, epochs, 0.0, {})
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        losses = []
        for i in range(0, len(order), batch_size):
            if schedule.should_update(step):
                net.update_masks(schedule.sparsity(step))
            batch = order[i:i + batch_size]
            losses.append(net.sgd_step(x_train[batch], data.y_train[batch]))
            step += 1
        result.loss_curve.append(float(np.mean(losses)))
        result.sparsity_curve.append(float(np.mean([sparsity_of(w) for w in net.weights])))
    result.accuracy = float(np.mean(net.predict(data.x_test.reshape(len(data.x_test), -1)) == data.y_test))
    result.layer_sparsity = {f"fc{i + 1}": sparsity_of(w) for i, w in enumerate(net.weights)}
    return result


# ----------------------------------------------------------------- results as text
def format_row(r: SparseResult) -> str:
    """One run: target sparsity, accuracy, loss and zeros per layer."""
    layers = ", ".join(f"{k} {v:.1%}" for k, v in r.layer_sparsity.items())
    return (f"{r.model:7s} target {r.final_sparsity:4.0%}  accuracy {r.accuracy:.2%}  "
            f"loss {r.loss_curve[-1]:.4f}  zeros per layer: {layers}")


def format_comparisons(results: list[SparseResult]) -> list[str]:
    """Sparse minus dense accuracy of each model, in percentage points."""
    lines = []
    for name in dict.fromkeys(r.model for r in results):
        dense = next((r for r in results if r.model == name and r.final_sparsity == 0), None)
        for r in results:
            if r.model == name and dense is not None and r is not dense:
                lines.append(f"{name}: sparse ({r.final_sparsity:.0%}) - dense accuracy = "
                             f"{100 * (r.accuracy - dense.accuracy):+.2f} percentage points")
    return lines


def format_results(results: list[SparseResult]) -> str:
    """Accuracy dense vs sparse and the per-layer sparsity of each run."""
    return "\n".join([format_row(r) for r in results] + format_comparisons(results))
