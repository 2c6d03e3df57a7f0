"""PowerDifference in a real graph: instance normalisation in a style-transfer residual block.

Fast style transfer (Johnson et al., 2016; the course lab) builds its image transform net from
residual blocks ``x + IN(conv(relu(IN(conv(x)))))``, where instance normalisation (IN)
normalises each image's channels over height and width.  As in the course lab, the variance
is computed with the custom op: ``var = mean(PowerDifference(x, mean, 2))``.  Traced with
``tf.function`` the graph holds ``PowerDifference`` nodes, and training through it uses the
gradient registered in :mod:`tfbench.operators.power_difference`.

``backend="fused"`` computes the whole instance norm with the fused C++ op instead
(:mod:`tfbench.operators.fused_instance_norm`, one kernel forward and one backward).

``python -m tfbench.ops demo`` writes the graph (before and after grappler, plus the traced op
graph) to TensorBoard.  Keras' ``GroupNormalization(groups=-1)`` is instance normalisation:
the tests use it as the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfbench.operators import fused_instance_norm
from tfbench.operators.power_difference import power_difference

EPSILON = 1e-3  # Keras GroupNormalization's default, so the two agree


def numpy_power_difference(x: tf.Tensor, y: tf.Tensor, pow: float) -> tf.Tensor:
    """PowerDifference computed by NumPy inside the graph (``tf.numpy_function``): the lab's third variant.

    A ``PyFunc`` node calls back into Python on every run; it has no gradient (inference only).
    """
    x = tf.convert_to_tensor(x)
    y = tf.convert_to_tensor(y, dtype=x.dtype)
    exponent = np.asarray(pow, x.dtype.as_numpy_dtype)

    def compute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.power(a - b, exponent).astype(a.dtype, copy=False)

    z = tf.numpy_function(compute, [x, y], x.dtype, stateful=False, name="NumpyPowerDifference")
    z.set_shape(tf.broadcast_static_shape(x.shape, y.shape))
    return z


def instance_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, *, epsilon: float = EPSILON,
                  backend: str | None = None) -> tf.Tensor:
    """Normalise each image and channel of NHWC ``x`` over H and W; variance via PowerDifference.

    ``backend``: the op's ``"cpp"``, ``"fallback"`` or ``"auto"`` (see :mod:`tfbench.operators.backend`),
    ``"numpy"`` for :func:`numpy_power_difference`, or ``"fused"`` for the fused ``InstanceNorm`` op
    (its own backend rule: the composite of TensorFlow ops where it cannot be built).
    """
    if backend == "fused":
        return fused_instance_norm.instance_norm(x, gamma, beta, epsilon=epsilon)
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    if backend == "numpy":
        squares = numpy_power_difference(x, mean, 2.0)
    else:
        squares = power_difference(x, mean, 2.0, backend=backend)
    variance = tf.reduce_mean(squares, axis=[1, 2], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta


@dataclass
class ResidualBlock:
    """The variables of one residual block: two 3x3 convolutions, each followed by IN."""

    kernel1: tf.Variable
    gamma1: tf.Variable
    beta1: tf.Variable
    kernel2: tf.Variable
    gamma2: tf.Variable
    beta2: tf.Variable

    @classmethod
    def create(cls, channels: int, seed: int = 0) -> "ResidualBlock":
        """Seeded random kernels (He init), gamma 1 and beta 0 with a little noise."""
        rng = np.random.default_rng(seed)

        def var(shape: tuple[int, ...], mean: float, std: float, name: str) -> tf.Variable:
            return tf.Variable(rng.normal(mean, std, size=shape).astype(np.float32), name=name)

        k_std = float(np.sqrt(2.0 / (9 * channels)))
        return cls(var((3, 3, channels, channels), 0.0, k_std, "kernel1"), var((channels,), 1.0, 0.1, "gamma1"),
                   var((channels,), 0.0, 0.1, "beta1"), var((3, 3, channels, channels), 0.0, k_std, "kernel2"),
                   var((channels,), 1.0, 0.1, "gamma2"), var((channels,), 0.0, 0.1, "beta2"))

    @property
    def variables(self) -> list[tf.Variable]:
        """All trainable variables, in a fixed order."""
        return [self.kernel1, self.gamma1, self.beta1, self.kernel2, self.gamma2, self.beta2]


def residual_block(x: tf.Tensor, block: ResidualBlock, *, backend: str | None = None) -> tf.Tensor:
    """x + IN(conv(relu(IN(conv(x))))) with reflection padding, as in fast style transfer."""

    def conv(v: tf.Tensor, kernel: tf.Variable) -> tf.Tensor:
        padded = tf.pad(v, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
        return tf.nn.conv2d(padded, kernel, strides=1, padding="VALID")

    with tf.name_scope("residual_block"):
        h = tf.nn.relu(instance_norm(conv(x, block.kernel1), block.gamma1, block.beta1, backend=backend))
        return x + instance_norm(conv(h, block.kernel2), block.gamma2, block.beta2, backend=backend)


def make_train_step(block: ResidualBlock, *, backend: str | None = None,
                    learning_rate: float = 0.01) -> tf.types.experimental.GenericFunction:
    """A tf.function SGD step that pulls the block's output towards a target image."""

    @tf.function
    def train_step(x: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(residual_block(x, block, backend=backend) - target))
        grads = tape.gradient(loss, block.variables)
        for variable, grad in zip(block.variables, grads):
            variable.assign_sub(learning_rate * grad)
        return loss

    return train_step
