"""VGG19 (Simonyan & Zisserman 2014, configuration "E"), built two ways from one description.

The architecture is data (:data:`CFG`, as in torchvision's ``vgg.py``); two small builders
interpret it:

- :class:`VGG19Module`, a ``tf.Module`` holding explicit ``tf.Variable`` s named like the
  original Caffe model (``conv1_1`` ... ``conv5_4``, ``fc6``, ``fc7``, ``fc8``): the
  textbook ``build_vggnet`` written for TensorFlow 2.  Call it eagerly, or get a
  ``tf.function`` (optionally XLA-compiled) with :meth:`VGG19Module.as_function`.
- :func:`build_keras_vgg19`, a Keras 3 functional model with ``keras.applications.VGG19``'s
  layer names (``block1_conv1`` ... ``fc1``, ``fc2``, ``predictions``), so the weights of
  one load into the other.

Both take one weight dict ``{"conv1_1": (kernel HWIO, bias), ..., "fc8": (kernel, bias)}``;
``fc6``'s kernel is ``(7*7*512, 4096)`` in the (H, W, C) flatten order of NHWC tensors.
Both return logits; apply softmax yourself (or use :meth:`VGG19Module.probabilities`).
Weights are seeded random unless you pass some: nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import tensorflow as tf

from tfbench.models.module import ExplicitModule, WeightDict
from tfbench.models.precision import compute_dtype as _compute_dtype

#: Configuration "E" of the paper: output channels of each 3x3 conv, "M" for a 2x2 max pool.
CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                        512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
FC_UNITS = (4096, 4096)
NUM_CLASSES = 1000
INPUT_SIZE = 224
TRAINABLE_PARAMS = 143_667_240  # with 1000 classes at 224x224: the paper's 144M


@dataclass(frozen=True)
class LayerSpec:
    """One layer with weights: Caffe name, Keras name, kind, and kernel/bias shapes."""

    name: str
    keras_name: str
    kind: str  # "conv" or "fc"
    kernel_shape: tuple[int, ...]
    bias_shape: tuple[int, ...]

    @property
    def params(self) -> int:
        """Number of trainable parameters (kernel + bias)."""
        return int(np.prod(self.kernel_shape)) + int(np.prod(self.bias_shape))


def layer_specs(num_classes: int = NUM_CLASSES, input_size: int = INPUT_SIZE, *,
                include_top: bool = True) -> list[LayerSpec]:
    """The 19 weight layers in order (the 16 convolutions without the top), with their shapes."""
    if input_size % 32 or input_size < 32:
        raise ValueError(f"VGG19 needs an input size divisible by 32 (five 2x2 pools), got {input_size}")
    specs, channels, block, conv = [], 3, 1, 1
    for item in CFG:
        if item == "M":
            block, conv = block + 1, 1
            continue
        specs.append(LayerSpec(f"conv{block}_{conv}", f"block{block}_conv{conv}", "conv",
                               (3, 3, channels, int(item)), (int(item),)))
        channels, conv = int(item), conv + 1
    if not include_top:
        return specs
    features = (input_size // 32) ** 2 * channels
    dims = [features, *FC_UNITS, num_classes]
    for i, keras_name in enumerate(("fc1", "fc2", "predictions")):
        specs.append(LayerSpec(f"fc{6 + i}", keras_name, "fc", (dims[i], dims[i + 1]), (dims[i + 1],)))
    return specs


def keras_name_map() -> dict[str, str]:
    """Caffe-style name -> keras.applications name, e.g. ``conv1_1 -> block1_conv1``, ``fc8 -> predictions``."""
    return {s.name: s.keras_name for s in layer_specs()}


def block_of(layer: str) -> str:
    """The name scope a layer sits in: ``conv3_2 -> block3``, ``pool5 -> block5``, ``fc7 -> classifier``."""
    if layer.startswith("fc"):
        return "classifier"
    return "block" + layer.removeprefix("conv").removeprefix("pool").split("_")[0]


def conv_blocks() -> list[list[int]]:
    """:data:`CFG` split at its pools: the output channels of each block's convs."""
    blocks: list[list[int]] = [[]]
    for item in CFG:
        if item == "M":
            blocks.append([])
        else:
            blocks[-1].append(int(item))
    return blocks[:-1]


def random_weights(seed: int = 0, num_classes: int = NUM_CLASSES, input_size: int = INPUT_SIZE, *,
                   include_top: bool = True) -> WeightDict:
    """Seeded Glorot-uniform kernels and zero biases (Keras' defaults), as float32 NumPy arrays.

    The convolutions come first, so they are the same with and without the top.
    """
    rng = np.random.default_rng(seed)
    weights: WeightDict = {}
    for spec in layer_specs(num_classes, input_size, include_top=include_top):
        receptive = int(np.prod(spec.kernel_shape[:-2])) if spec.kind == "conv" else 1
        fan_in, fan_out = spec.kernel_shape[-2] * receptive, spec.kernel_shape[-1] * receptive
        limit = np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
        kernel = rng.random(spec.kernel_shape, dtype=np.float32) * (2 * limit) - limit
        weights[spec.name] = (kernel, np.zeros(spec.bias_shape, np.float32))
    return weights


def forward_bytes(batch: int, input_size: int = INPUT_SIZE, num_classes: int = NUM_CLASSES) -> tuple[int, int]:
    """About the memory of one float32 forward pass: ``(fixed, per image)`` bytes, a lower bound.

    Fixed: the weights.  Per image: the input twice (the array and its tensor) and the two largest
    activations alive at once (block 1's, ``input_size^2 x 64`` each).
    """
    weights = 4 * sum(spec.params for spec in layer_specs(num_classes, input_size))
    return weights, 4 * input_size * input_size * (2 * 3 + 2 * 64)


def check_weights(weights: WeightDict, specs: list[LayerSpec], source: str = "weights") -> None:
    """Raise ValueError naming the first layer that is missing or has the wrong shape."""
    for spec in specs:
        if spec.name not in weights:
            raise ValueError(f"{source}: layer {spec.name} is missing (found layers: {sorted(weights)})")
        kernel, bias = weights[spec.name]
        for what, expected, found in (("kernel", spec.kernel_shape, kernel.shape),
                                      ("bias", spec.bias_shape, bias.shape)):
            if tuple(found) != tuple(expected):
                raise ValueError(f"{source}: layer {spec.name} {what} has shape {tuple(found)}, "
                                 f"expected {tuple(expected)}")


class VGG19Module(ExplicitModule):
    """VGG19 as explicit variables and ``tf.nn`` ops: the network with nothing hidden.

    Input: float32 NHWC images already normalised the way the weights expect
    (see ``tfbench.data.weights`` for each file format's channel order and mean).
    ``include_top=False`` keeps only the 16 convolutions (the feature extractor of style transfer
    and of Keras' ``include_top=False``): :meth:`layers` then stops after ``pool5``.
    ``compute_dtype`` ("float32", "bfloat16" or "float16") is the dtype of the arithmetic:
    the variables stay float32 and the logits come back float32, as under Keras' ``mixed_*``
    policies (see :mod:`tfbench.models.precision`).
    """

    def __init__(self, weights: WeightDict | None = None, *, seed: int = 0,
                 num_classes: int = NUM_CLASSES, input_size: int = INPUT_SIZE, name: str = "vgg19",
                 compute_dtype: str | tf.DType = "float32", include_top: bool = True):
        super().__init__(name=name)
        self.compute_dtype = _compute_dtype(compute_dtype)
        self.specs = layer_specs(num_classes, input_size, include_top=include_top)
        self.input_size = input_size
        self.include_top = include_top
        if weights is None:
            weights = random_weights(seed, num_classes, input_size, include_top=include_top)
        check_weights(weights, self.specs)
        self.kernels: dict[str, tf.Variable] = {}
        self.biases: dict[str, tf.Variable] = {}
        with self.name_scope:
            for spec in self.specs:
                kernel, bias = weights[spec.name]
                with tf.name_scope(block_of(spec.name)), tf.name_scope(spec.name):
                    self.kernels[spec.name] = tf.Variable(kernel, dtype=tf.float32, name="weights")
                    self.biases[spec.name] = tf.Variable(bias, dtype=tf.float32, name="biases")

    def layers(self, images: tf.Tensor, last: str | None = None) -> Iterator[tuple[str, tf.Tensor]]:
        """Run the network step by step, yielding ``(layer name, output)`` after every layer.

        Ops are named by block (``block1/conv1_1/Conv2D`` ... ``block5/pool5``,
        ``classifier/fc6/MatMul``), so TensorBoard draws five blocks and a classifier.  A block's
        outputs are yielded after its name scope is closed, so callers never add ops inside it.
        Outputs are in the compute dtype.  With ``last`` (a conv layer) nothing after it is computed.
        """
        dtype = self.compute_dtype
        x = tf.cast(tf.convert_to_tensor(images, tf.float32), dtype)
        convs = iter(s for s in self.specs if s.kind == "conv")
        for block, channels in enumerate(conv_blocks(), start=1):
            outputs = []
            with tf.name_scope(f"block{block}"):  # entered once: re-entering would make "block1_1"
                for _ in channels:
                    spec = next(convs)
                    with tf.name_scope(spec.name):
                        x = tf.nn.conv2d(x, tf.cast(self.kernels[spec.name], dtype), strides=1, padding="SAME")
                        x = tf.nn.relu(tf.nn.bias_add(x, tf.cast(self.biases[spec.name], dtype)))
                    outputs.append((spec.name, x))
                    if spec.name == last:
                        break
                if spec.name != last:
                    x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID", name=f"pool{block}")
                    outputs.append((f"pool{block}", x))
            yield from outputs
            if spec.name == last:
                return
        if not self.include_top:
            return
        outputs = []
        with tf.name_scope("classifier"):
            x = tf.reshape(x, [-1, self.specs[-3].kernel_shape[0]], name="flatten")
            for spec in self.specs[-3:]:
                with tf.name_scope(spec.name):
                    x = tf.nn.bias_add(tf.matmul(x, tf.cast(self.kernels[spec.name], dtype)),
                                       tf.cast(self.biases[spec.name], dtype))
                    if spec.name != "fc8":
                        x = tf.nn.relu(x)
                outputs.append((spec.name, x))
        yield from outputs

    def logits(self, x: tf.Tensor) -> tf.Tensor:
        """Float32 logits ``(N, num_classes)``, named so the graph's output reads ``logits``."""
        return tf.identity(x, name="logits")

    def probabilities(self, images: tf.Tensor) -> tf.Tensor:
        """Softmax of the logits."""
        return tf.nn.softmax(self(images))

    def as_function(self, jit_compile: bool = False) -> tf.types.experimental.PolymorphicFunction:
        """``self.__call__`` as a ``tf.function`` for any batch size (and XLA if ``jit_compile``)."""
        signature = [tf.TensorSpec([None, self.input_size, self.input_size, 3], tf.float32, name="images")]
        return tf.function(self.__call__, input_signature=signature, jit_compile=jit_compile)



def build_keras_vgg19(weights: WeightDict | None = None, *, seed: int = 0, num_classes: int = NUM_CLASSES,
                      input_size: int = INPUT_SIZE, classifier_activation: str | None = None,
                      name: str = "vgg19"):
    """Keras functional VGG19 with ``keras.applications.VGG19``'s layer names, returning logits by default."""
    import keras
    from keras import layers

    inputs = keras.Input((input_size, input_size, 3), name="input_layer")
    x, block, conv = inputs, 1, 1
    for item in CFG:
        if item == "M":
            x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
            block, conv = block + 1, 1
            continue
        x = layers.Conv2D(int(item), 3, padding="same", activation="relu", name=f"block{block}_conv{conv}")(x)
        conv += 1
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(FC_UNITS[0], activation="relu", name="fc1")(x)
    x = layers.Dense(FC_UNITS[1], activation="relu", name="fc2")(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name)
    set_keras_weights(model, weights if weights is not None else random_weights(seed, num_classes, input_size))
    return model


def set_keras_weights(model, weights: WeightDict) -> None:
    """Copy a weight dict into a Keras VGG19 (ours or ``keras.applications.VGG19``) by layer name."""
    specs = layer_specs(model.output_shape[-1], model.input_shape[1])
    check_weights(weights, specs)
    for spec in specs:
        model.get_layer(spec.keras_name).set_weights(list(weights[spec.name]))


def keras_weights(model) -> WeightDict:
    """Read a weight dict out of a Keras VGG19 (ours or ``keras.applications.VGG19``)."""
    specs = layer_specs(model.output_shape[-1], model.input_shape[1])
    out: WeightDict = {}
    for spec in specs:
        kernel, bias = model.get_layer(spec.keras_name).get_weights()
        out[spec.name] = (np.asarray(kernel), np.asarray(bias))
    return out
