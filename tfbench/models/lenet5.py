"""LeNet-5 (LeCun et al. 1998), built two ways from one description, like ``tfbench.models.vgg19``.

The classic network on 32x32x1 inputs (MNIST's 28x28 padded by 2 on each side)::

    C1 conv 6@5x5 -> S2 subsample 2x2 -> C3 conv 16@5x5 -> S4 subsample 2x2
    -> F5 fc 120 -> F6 fc 84 -> output fc 10            61,706 trainable parameters

Choices, stated: the paper's C3 connects each map to a subset of S2's maps, and its
subsampling layers have a trainable coefficient and bias; like almost every modern
re-implementation we use a full C3 and parameter-free pooling.  ``activation="tanh"``
with average pooling follows the paper (default); ``activation="relu"`` switches to max
pooling, the modern variant.  The output layer returns logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from tfbench.models.module import ExplicitModule, WeightDict
from tfbench.models.precision import compute_dtype as _compute_dtype

INPUT_SHAPE = (32, 32, 1)
NUM_CLASSES = 10
TRAINABLE_PARAMS = 61_706
ACTIVATIONS = ("tanh", "relu")


@dataclass(frozen=True)
class LayerSpec:
    """One layer with weights: name, kind ("conv" or "fc"), kernel and bias shapes."""

    name: str
    kind: str
    kernel_shape: tuple[int, ...]
    bias_shape: tuple[int, ...]


#: The architecture as data; pooling (S2, S4) sits after each conv.
LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec("c1", "conv", (5, 5, 1, 6), (6,)),
    LayerSpec("c3", "conv", (5, 5, 6, 16), (16,)),
    LayerSpec("f5", "fc", (5 * 5 * 16, 120), (120,)),
    LayerSpec("f6", "fc", (120, 84), (84,)),
    LayerSpec("output", "fc", (84, NUM_CLASSES), (NUM_CLASSES,)),
)
POOL_NAMES = {"c1": "s2", "c3": "s4"}
#: The name scope of each layer in the op graph: TensorBoard draws two conv blocks and a classifier.
SCOPES = {"c1": "block1", "s2": "block1", "c3": "block2", "s4": "block2",
          "f5": "classifier", "f6": "classifier", "output": "classifier"}


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def random_weights(seed: int = 0) -> WeightDict:
    """Seeded Glorot-uniform kernels and zero biases, as float32 NumPy arrays."""
    rng = np.random.default_rng(seed)
    weights: WeightDict = {}
    for spec in LAYERS:
        receptive = int(np.prod(spec.kernel_shape[:-2])) if spec.kind == "conv" else 1
        limit = np.sqrt(6.0 / (receptive * (spec.kernel_shape[-2] + spec.kernel_shape[-1])))
        kernel = rng.uniform(-limit, limit, spec.kernel_shape).astype(np.float32)
        weights[spec.name] = (kernel, np.zeros(spec.bias_shape, np.float32))
    return weights


class LeNet5Module(ExplicitModule):
    """LeNet-5 as explicit variables and ``tf.nn`` ops. Input: float32 (N, 32, 32, 1).

    ``compute_dtype`` ("float32", "bfloat16", "float16"): the arithmetic's dtype; variables and
    the returned logits stay float32 (see :mod:`tfbench.models.precision`).  ``conv`` replaces
    ``tf.nn.conv2d`` in C1 and C3 (same arguments), to train with another convolution.
    """

    def __init__(self, weights: WeightDict | None = None, *, seed: int = 0,
                 activation: str = "tanh", name: str = "lenet5", compute_dtype: str | tf.DType = "float32",
                 conv: Callable[..., tf.Tensor] | None = None):
        super().__init__(name=name)
        self.conv = conv or tf.nn.conv2d  # conv(x, kernel, strides, padding): e.g. tfbench.operators.conv2d.conv2d
        _check_activation(activation)
        self.compute_dtype = _compute_dtype(compute_dtype)
        self.activation = activation
        weights = weights if weights is not None else random_weights(seed)
        self.kernels: dict[str, tf.Variable] = {}
        self.biases: dict[str, tf.Variable] = {}
        with self.name_scope:
            for spec in LAYERS:
                kernel, bias = weights[spec.name]
                if tuple(kernel.shape) != spec.kernel_shape or tuple(bias.shape) != spec.bias_shape:
                    raise ValueError(f"layer {spec.name}: got kernel {tuple(kernel.shape)} bias "
                                     f"{tuple(bias.shape)}, expected {spec.kernel_shape} {spec.bias_shape}")
                with tf.name_scope(SCOPES[spec.name]), tf.name_scope(spec.name):
                    self.kernels[spec.name] = tf.Variable(kernel, name="weights")
                    self.biases[spec.name] = tf.Variable(bias, name="biases")

    def layers(self, images: tf.Tensor) -> Iterator[tuple[str, tf.Tensor]]:
        """Run the network step by step, yielding ``(layer name, output)``."""
        act = tf.nn.tanh if self.activation == "tanh" else tf.nn.relu
        pool = tf.nn.avg_pool2d if self.activation == "tanh" else tf.nn.max_pool2d
        dtype = self.compute_dtype
        x = tf.cast(tf.convert_to_tensor(images, tf.float32), dtype)
        for scope in dict.fromkeys(SCOPES.values()):
            outputs = []
            with tf.name_scope(scope):  # entered once per block, so the graph has no "block1_1"
                for spec in (s for s in LAYERS if SCOPES[s.name] == scope):
                    with tf.name_scope(spec.name):
                        kernel = tf.cast(self.kernels[spec.name], dtype)
                        bias = tf.cast(self.biases[spec.name], dtype)
                        if spec.kind == "conv":
                            x = act(tf.nn.bias_add(self.conv(x, kernel, 1, "VALID"), bias))
                        else:
                            if x.shape.rank == 4:
                                x = tf.reshape(x, [-1, spec.kernel_shape[0]])
                            x = tf.nn.bias_add(tf.matmul(x, kernel), bias)
                            if spec.name != "output":
                                x = act(x)
                    outputs.append((spec.name, x))
                    if spec.name in POOL_NAMES:
                        x = pool(x, ksize=2, strides=2, padding="VALID", name=POOL_NAMES[spec.name])
                        outputs.append((POOL_NAMES[spec.name], x))
            yield from outputs  # after the scope is closed: callers never add ops inside it



def build_keras_lenet5(weights: WeightDict | None = None, *, seed: int = 0, activation: str = "tanh",
                       name: str = "lenet5"):
    """LeNet-5 as a Keras functional model with the same layer names as the module; returns logits."""
    import keras
    from keras import layers

    _check_activation(activation)
    pool = layers.AveragePooling2D if activation == "tanh" else layers.MaxPooling2D
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    for spec in LAYERS:
        last = spec.name == "output"
        if spec.kind == "conv":
            x = layers.Conv2D(spec.kernel_shape[-1], 5, activation=activation, name=spec.name)(x)
            x = pool(2, name=POOL_NAMES[spec.name])(x)
        else:
            if len(x.shape) == 4:
                x = layers.Flatten(name="flatten")(x)
            x = layers.Dense(spec.kernel_shape[-1], activation=None if last else activation, name=spec.name)(x)
    model = keras.Model(inputs, x, name=name)
    weights = weights if weights is not None else random_weights(seed)
    for spec in LAYERS:
        model.get_layer(spec.name).set_weights(list(weights[spec.name]))
    return model


def keras_weights(model) -> WeightDict:
    """Read a weight dict out of a Keras LeNet-5 built by :func:`build_keras_lenet5`."""
    return {s.name: tuple(np.asarray(w) for w in model.get_layer(s.name).get_weights()) for s in LAYERS}
