"""The multilayer perceptron of exercise 3.10: flattened 28x28 digits -> hidden layers -> 10 logits.

Topology is a tuple of hidden widths (default ``(512, 256)``: 535,818 parameters, above 98%
on MNIST).  Built two ways like the other models: a ``tf.Module`` with explicit variables
and a Keras functional model with the same layer names (``fc1``, ``fc2``, ..., ``output``).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from tfbench.models.module import ExplicitModule, WeightDict
from tfbench.models.precision import compute_dtype as _compute_dtype

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
DEFAULT_HIDDEN = (512, 256)
ACTIVATIONS = ("relu", "tanh", "sigmoid")


def layer_shapes(hidden: Sequence[int] = DEFAULT_HIDDEN) -> list[tuple[str, tuple[int, int]]]:
    """``[(name, (in, out)), ...]`` for every dense layer."""
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden widths must be positive integers, got {tuple(hidden)}")
    dims = [int(np.prod(INPUT_SHAPE)), *map(int, hidden), NUM_CLASSES]
    names = [f"fc{i + 1}" for i in range(len(hidden))] + ["output"]
    return [(name, (dims[i], dims[i + 1])) for i, name in enumerate(names)]


def count_params(hidden: Sequence[int] = DEFAULT_HIDDEN) -> int:
    """Trainable parameters of the MLP with these hidden widths."""
    return sum(i * o + o for _, (i, o) in layer_shapes(hidden))


def random_weights(hidden: Sequence[int] = DEFAULT_HIDDEN, seed: int = 0) -> WeightDict:
    """Seeded Glorot-uniform kernels and zero biases."""
    rng = np.random.default_rng(seed)
    out: WeightDict = {}
    for name, (fan_in, fan_out) in layer_shapes(hidden):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        out[name] = (rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32),
                     np.zeros(fan_out, np.float32))
    return out


class MLPModule(ExplicitModule):
    """The MLP as explicit variables. Input: float32 (N, 28, 28, 1) or (N, 784).

    ``compute_dtype`` ("float32", "bfloat16", "float16"): the arithmetic's dtype; variables and
    the returned logits stay float32 (see :mod:`tfbench.models.precision`).
    """

    def __init__(self, hidden: Sequence[int] = DEFAULT_HIDDEN, weights: WeightDict | None = None, *,
                 seed: int = 0, activation: str = "relu", name: str = "mlp", compute_dtype: str | tf.DType = "float32"):
        super().__init__(name=name)
        self.compute_dtype = _compute_dtype(compute_dtype)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.shapes = layer_shapes(self.hidden)
        weights = weights if weights is not None else random_weights(self.hidden, seed)
        self.kernels: dict[str, tf.Variable] = {}
        self.biases: dict[str, tf.Variable] = {}
        with self.name_scope:
            for name, shape in self.shapes:
                kernel, bias = weights[name]
                if tuple(kernel.shape) != shape:
                    raise ValueError(f"layer {name}: kernel shape {tuple(kernel.shape)}, expected {shape}")
                with tf.name_scope(name):
                    self.kernels[name] = tf.Variable(kernel, name="weights")
                    self.biases[name] = tf.Variable(bias, name="biases")

    def layers(self, images: tf.Tensor) -> Iterator[tuple[str, tf.Tensor]]:
        """Run the network step by step, yielding ``(layer name, output)``."""
        act = getattr(tf.nn, self.activation)
        dtype = self.compute_dtype
        x = tf.cast(tf.reshape(tf.convert_to_tensor(images, tf.float32), [-1, self.shapes[0][1][0]]), dtype)
        for name, _ in self.shapes:
            with tf.name_scope(name):
                x = tf.nn.bias_add(tf.matmul(x, tf.cast(self.kernels[name], dtype)), tf.cast(self.biases[name], dtype))
                if name != "output":
                    x = act(x)
            yield name, x



def build_keras_mlp(hidden: Sequence[int] = DEFAULT_HIDDEN, weights: WeightDict | None = None, *,
                    seed: int = 0, activation: str = "relu", name: str = "mlp"):
    """The MLP as a Keras functional model with the module's layer names; returns logits."""
    import keras
    from keras import layers

    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    shapes = layer_shapes(hidden)
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for name, (_, units) in shapes:
        x = layers.Dense(units, activation=None if name == "output" else activation, name=name)(x)
    model = keras.Model(inputs, x, name=name)
    weights = weights if weights is not None else random_weights(hidden, seed)
    for layer_name, _ in shapes:
        model.get_layer(layer_name).set_weights(list(weights[layer_name]))
    return model
