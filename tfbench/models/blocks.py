"""Small network blocks whose graphs grappler and XLA rewrite: the specimens of ex. 5.10 and 5.11.

Each block is a few ``tf.nn`` ops (or Keras layers, where what Keras emits is the point) with
seeded weights, small enough to read its graph node by node:

- :class:`ConvBiasRelu` - ``Conv2D -> BiasAdd -> Relu``, the pattern grappler's remapper turns
  into one ``_FusedConv2D``;
- :func:`keras_conv_bn_relu` - Keras ``Conv2D -> BatchNormalization -> ReLU``; at inference
  Keras 3 lowers the normalisation to ``Rsqrt/Mul/Sub/AddV2`` ops that grappler leaves alone;
- :class:`FusedBNConvRelu` - the same maths with ``FusedBatchNormV3``, which the remapper *can*
  fold into ``_FusedConv2D``; :func:`fold_batch_norm` folds it into the weights by hand;
- :class:`ResNetBlock` - conv-BN-relu-conv-BN, plus the identity shortcut, then relu;
- :class:`ElementwiseChain` - ten elementwise ops in a row, the case XLA's fusion is made for;
- :class:`DenseBiasRelu` - ``MatMul -> BiasAdd -> Relu`` (``_FusedMatMul``), the fc layers.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfbench.models.shapes import ConvShape, DenseShape

__all__ = ["ConvShape", "DenseShape"]  # problem sizes live in shapes.py (no TensorFlow needed to list them)

BN_EPSILON = 1e-3  # Keras' BatchNormalization default


def glorot(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Glorot-uniform weights (Keras' default), so activations stay of order one."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def bn_stats(rng: np.random.Generator, channels: int) -> dict[str, np.ndarray]:
    """Non-trivial gamma, beta, moving mean and variance, so folding them is really tested."""
    return {"gamma": rng.uniform(0.5, 1.5, channels).astype(np.float32),
            "beta": rng.uniform(-0.5, 0.5, channels).astype(np.float32),
            "mean": rng.uniform(-0.5, 0.5, channels).astype(np.float32),
            "variance": rng.uniform(0.5, 2.0, channels).astype(np.float32)}


class ConvBiasRelu(tf.Module):
    """``relu(conv2d(x, W) + b)`` written as the three ops the remapper pattern-matches."""

    def __init__(self, shape: ConvShape, seed: int = 0, kernel: np.ndarray | None = None,
                 bias: np.ndarray | None = None, name: str = "conv_bias_relu"):
        super().__init__(name=name)
        rng = np.random.default_rng(seed)
        k = shape.kernel
        kernel = glorot(rng, (k, k, shape.cin, shape.cout)) if kernel is None else kernel
        bias = rng.uniform(-0.1, 0.1, shape.cout).astype(np.float32) if bias is None else bias
        with self.name_scope:
            self.kernel = tf.Variable(kernel, name="kernel")
            self.bias = tf.Variable(bias, name="bias")

    @tf.Module.with_name_scope
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, self.kernel, 1, "SAME"), self.bias))


def keras_conv_bn_relu(shape: ConvShape, seed: int = 0):
    """Keras ``Conv2D(use_bias=False) -> BatchNormalization -> ReLU`` with seeded, non-trivial BN statistics."""
    import keras

    rng = np.random.default_rng(seed)
    model = keras.Sequential([
        keras.Input((shape.size, shape.size, shape.cin)),
        keras.layers.Conv2D(shape.cout, shape.kernel, padding="same", use_bias=False, name="conv"),
        keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="bn"),
        keras.layers.ReLU(name="relu"),
    ], name="conv_bn_relu")
    model.get_layer("conv").set_weights([glorot(rng, (shape.kernel, shape.kernel, shape.cin, shape.cout))])
    s = bn_stats(rng, shape.cout)
    model.get_layer("bn").set_weights([s["gamma"], s["beta"], s["mean"], s["variance"]])
    return model


def keras_bn_weights(model) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The conv kernel and BN statistics of a :func:`keras_conv_bn_relu` model."""
    (kernel,) = model.get_layer("conv").get_weights()
    gamma, beta, mean, variance = model.get_layer("bn").get_weights()
    return kernel, {"gamma": gamma, "beta": beta, "mean": mean, "variance": variance}


def fold_batch_norm(kernel: np.ndarray, bias: np.ndarray | None, gamma: np.ndarray, beta: np.ndarray,
                    mean: np.ndarray, variance: np.ndarray, epsilon: float = BN_EPSILON
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fold inference-mode BN into the conv before it: ``W' = W * s``, ``b' = (b - mean) * s + beta``.

    With ``s = gamma / sqrt(variance + eps)`` per output channel, ``BN(conv(x, W) + b)`` equals
    ``conv(x, W') + b'`` exactly in real arithmetic; hand-written because this is the lesson
    (grappler does the same only for ``FusedBatchNorm`` ops, never for Keras 3's elementwise BN).
    """
    scale = (gamma / np.sqrt(variance.astype(np.float64) + epsilon)).astype(np.float64)
    bias = np.zeros_like(mean) if bias is None else bias
    folded_kernel = (kernel.astype(np.float64) * scale).astype(np.float32)  # scale broadcasts over HWI
    folded_bias = ((bias.astype(np.float64) - mean) * scale + beta).astype(np.float32)
    return folded_kernel, folded_bias


class FusedBNConvRelu(tf.Module):
    """``relu(FusedBatchNormV3(conv2d(x, W)))`` at inference: the form the remapper can fuse."""

    def __init__(self, kernel: np.ndarray, stats: dict[str, np.ndarray], name: str = "conv_fused_bn_relu"):
        super().__init__(name=name)
        with self.name_scope:
            self.kernel = tf.Variable(kernel, name="kernel")
            self.stats = {k: tf.Variable(v, name=k) for k, v in stats.items()}

    @tf.Module.with_name_scope
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = tf.nn.conv2d(x, self.kernel, 1, "SAME")
        s = self.stats
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, s["gamma"], s["beta"], s["mean"], s["variance"],
                                                   epsilon=BN_EPSILON, is_training=False)
        return tf.nn.relu(y)


class ResNetBlock(tf.Module):
    """A ResNet basic block at inference: conv-BN-relu-conv-BN, add the input, relu (``cin == cout``)."""

    def __init__(self, size: int = 14, channels: int = 64, batch: int = 1, seed: int = 0, name: str = "resnet_block"):
        super().__init__(name=name)
        rng = np.random.default_rng(seed)
        self.shape = ConvShape(batch, size, channels, channels, 3)
        self.kernels, self.stats = [], []
        with self.name_scope:
            for i in (1, 2):
                with tf.name_scope(f"conv{i}"):
                    self.kernels.append(tf.Variable(glorot(rng, (3, 3, channels, channels)), name="kernel"))
                with tf.name_scope(f"bn{i}"):
                    self.stats.append({k: tf.Variable(v, name=k) for k, v in bn_stats(rng, channels).items()})

    @tf.Module.with_name_scope
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = x
        for i, (kernel, s) in enumerate(zip(self.kernels, self.stats), start=1):
            with tf.name_scope(f"conv{i}"):
                y = tf.nn.conv2d(y, kernel, 1, "SAME")
            with tf.name_scope(f"bn{i}"):
                y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, s["gamma"], s["beta"], s["mean"], s["variance"],
                                                           epsilon=BN_EPSILON, is_training=False)
                if i == 1:
                    y = tf.nn.relu(y)
        with tf.name_scope("shortcut"):
            return tf.nn.relu(y + x)


class ElementwiseChain(tf.Module):
    """Ten elementwise ops in a row: each reads and writes the whole tensor when run one by one."""

    NUM_OPS = 10

    def __init__(self, name: str = "elementwise_chain"):
        super().__init__(name=name)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = x * 1.5
        y = y + 0.5
        y = tf.nn.relu(y)
        y = tf.square(y)
        y = y - 0.25
        y = tf.sigmoid(y)
        y = y * x
        y = tf.tanh(y)
        y = y + 1.0
        return tf.abs(y)


class DenseBiasRelu(tf.Module):
    """``relu(x @ W + b)`` as ``MatMul -> BiasAdd -> Relu``, which the remapper turns into ``_FusedMatMul``."""

    def __init__(self, shape: DenseShape, seed: int = 0, name: str = "dense_bias_relu"):
        super().__init__(name=name)
        rng = np.random.default_rng(seed)
        with self.name_scope:
            self.kernel = tf.Variable(glorot(rng, (shape.units_in, shape.units_out)), name="kernel")
            self.bias = tf.Variable(rng.uniform(-0.1, 0.1, shape.units_out).astype(np.float32), name="bias")

    @tf.Module.with_name_scope
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(tf.nn.bias_add(tf.matmul(x, self.kernel), self.bias))
