"""The image transform net of fast style transfer (Johnson et al., 2016; the course lab), as a Keras model.

One forward pass turns a photo into a painting in the style the net was trained on
(``python -m tfbench.style realtime`` trains it with :mod:`tfbench.models.style_losses`):

- **down-sampling**: a 9x9 convolution, then two 3x3 convolutions of stride 2 (``width``, ``2 width``,
  ``4 width`` channels);
- **residual blocks** ``x + IN(conv(relu(IN(conv(x)))))`` at a quarter of the resolution, as in
  :func:`tfbench.operators.instance_norm.residual_block`;
- **up-sampling**: nearest-neighbour 2x up-sampling and a 3x3 convolution, twice (resize-convolution:
  no checkerboard artefacts of transposed convolutions), then a 9x9 convolution to RGB and a sigmoid.

Every convolution pads by reflection, and every one but the last is followed by instance
normalisation (IN) whose variance is ``mean(PowerDifference(x, mean, 2))``
(:func:`tfbench.operators.instance_norm.instance_norm`), computed one of four ways (``norm=``):
``"tf"`` TensorFlow's own ops, ``"cpp"`` the PowerDifference C++ op, ``"numpy"`` NumPy through
``tf.numpy_function`` (inference only: it has no gradient), ``"fused"`` the whole norm as one C++ op
(:mod:`tfbench.operators.fused_instance_norm`, forward and backward).  The weights do not depend on the
choice, so :func:`with_norm` rebuilds a trained net with another one.  The custom layers are
registered with Keras, so ``.keras`` files load back with ``keras.saving.load_model``.

Input and output: RGB float32 pixels in ``[0, 1]``, any height and width divisible by 4.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfbench.operators.instance_norm import EPSILON, instance_norm

#: ``norm=`` value -> the ``backend`` of :func:`tfbench.operators.instance_norm.instance_norm`.
NORMS = {"tf": "fallback", "cpp": "cpp", "numpy": "numpy", "fused": "fused"}


@keras.saving.register_keras_serializable(package="tfbench")
class ReflectionPad(keras.layers.Layer):
    """Pad height and width by ``pad`` pixels, mirrored (``tf.pad(mode="REFLECT")``)."""

    def __init__(self, pad: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        p = self.pad
        return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")

    def compute_output_shape(self, shape: tuple) -> tuple:
        grow = lambda n: None if n is None else n + 2 * self.pad  # noqa: E731
        return (shape[0], grow(shape[1]), grow(shape[2]), shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package="tfbench")
class InstanceNorm(keras.layers.Layer):
    """Instance normalisation with a learned scale and shift per channel; variance via PowerDifference."""

    def __init__(self, norm: str = "tf", epsilon: float = EPSILON, **kwargs: Any):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.norm = norm
        self.epsilon = float(epsilon)

    def build(self, shape: tuple) -> None:
        self.gamma = self.add_weight(name="gamma", shape=(shape[-1],), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(shape[-1],), initializer="zeros")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return instance_norm(x, tf.convert_to_tensor(self.gamma), tf.convert_to_tensor(self.beta),
                             epsilon=self.epsilon, backend=NORMS[self.norm])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "norm": self.norm, "epsilon": self.epsilon}


def build_transform_net(*, width: int = 16, residual_blocks: int = 3, norm: str = "tf", seed: int = 0,
                        name: str = "transform_net") -> keras.Model:
    """The transform net with seeded He-normal kernels; ``width`` channels after the first convolution."""
    layers = keras.layers
    counter = iter(range(1000))

    def conv(x: Any, channels: int, size: int, stride: int = 1, label: str = "") -> Any:
        x = ReflectionPad(size // 2, name=f"{label}_pad")(x)
        return layers.Conv2D(channels, size, strides=stride, padding="valid", name=f"{label}_conv",
                             kernel_initializer=keras.initializers.HeNormal(seed=seed * 1000 + next(counter)))(x)

    def conv_in_relu(x: Any, channels: int, size: int, stride: int, label: str) -> Any:
        x = InstanceNorm(norm, name=f"{label}_in")(conv(x, channels, size, stride, label))
        return layers.ReLU(name=f"{label}_relu")(x)

    inputs = keras.Input((None, None, 3), name="images")
    x = conv_in_relu(inputs, width, 9, 1, "down1")
    x = conv_in_relu(x, 2 * width, 3, 2, "down2")
    x = conv_in_relu(x, 4 * width, 3, 2, "down3")
    for i in range(1, residual_blocks + 1):
        h = conv_in_relu(x, 4 * width, 3, 1, f"res{i}a")
        h = InstanceNorm(norm, name=f"res{i}b_in")(conv(h, 4 * width, 3, 1, f"res{i}b"))
        x = layers.Add(name=f"res{i}_add")([x, h])
    for i, channels in enumerate((2 * width, width), start=1):
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}_resize")(x)
        x = conv_in_relu(x, channels, 3, 1, f"up{i}")
    x = conv(x, 3, 9, 1, "rgb")
    outputs = layers.Activation("sigmoid", name="pixels")(x)
    return keras.Model(inputs, outputs, name=name)


def config_of(model: keras.Model) -> dict[str, Any]:
    """``width`` and ``residual_blocks`` of a net built by :func:`build_transform_net`."""
    width = model.get_layer("down1_conv").filters
    blocks = sum(1 for layer in model.layers if layer.name.endswith("_add"))
    return {"width": int(width), "residual_blocks": int(blocks)}


def with_norm(model: keras.Model, norm: str) -> keras.Model:
    """The same net and weights, its instance norms computed the ``norm`` way (a key of :data:`NORMS`)."""
    twin = build_transform_net(norm=norm, name=model.name, **config_of(model))
    twin.set_weights(model.get_weights())
    return twin
