"""The classic ImageNet networks of exercises 3.1 and 3.2, built with Keras 3 layers from their papers.

Every model here is an architecture written down as data (channel lists, block counts,
inception branch widths) and interpreted by a few lines of Keras: random initial weights,
nothing downloaded.  They exist so that ``tfbench.complexity`` can count neurons,
parameters, multiplications and additions on real built models instead of a table typed
by hand.  Together with ``tfbench.models.vgg19``, ``tfbench.models.lenet5`` and ``tfbench.models.mlp`` the zoo is:

=================  =========================================================  ==============
name               what                                                       params @ size
=================  =========================================================  ==============
alexnet            torchvision's single-tower AlexNet (64/192/384/256/256)    61,100,840 @224
alexnet_grouped    the original two-GPU AlexNet (96/256/384/384/256); conv2,  60,965,224 @227
                   conv4, conv5 as two towers, one per GPU, each seeing half
                   of the channels (a grouped convolution written out)
vgg19              configuration "E" (``tfbench.models.vgg19``)                       143,667,240 @224
resnet18/50/152    torchvision's ResNets: conv without bias + BatchNorm,       11,689,512 /
                   stride on the 3x3 conv of a bottleneck ("v1.5")            25,557,032 /
                                                                              60,192,808 @224
inception_v1       GoogLeNet as in the paper's Table 1 (conv biases, 5x5       6,998,552 @224
                   branches, no auxiliary classifiers)
inception_v1_bn    the course answer's variant: BatchNorm after every          7,039,122 @224
                   inception conv, fc 1024 + fc 2 (2 classes)                 (trainable)
lenet5             ``tfbench.models.lenet5`` on 32x32x1                              61,706
mlp                ``tfbench.models.mlp`` (784-512-256-10)                           535,818
=================  =========================================================  ==============

Stated simplifications: the local response normalisation of AlexNet and GoogLeNet is left
out (it has no parameters and no multiply-adds of note, and Keras 3 has no layer for it);
padding is explicit ``ZeroPadding2D`` so the arithmetic matches PyTorch's symmetric padding.
Every model returns logits.  ``python -m tfbench.complexity MODEL`` counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import keras
from keras import layers

from tfbench.plumbing.errors import UserError

NUM_CLASSES = 1000

#: torchvision AlexNet: (filters, kernel, stride, padding) per conv; max pool 3/2 after conv 1, 2 and 5.
ALEXNET_CONVS = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]
#: Krizhevsky et al. 2012: (filters, kernel, stride, padding, groups); groups=2 is "each GPU sees its half".
ALEXNET_GROUPED_CONVS = [(96, 11, 4, 0, 1), (256, 5, 1, 2, 2), (384, 3, 1, 1, 1), (384, 3, 1, 1, 2),
                         (256, 3, 1, 1, 2)]
ALEXNET_POOL_AFTER = (1, 2, 5)

#: ResNet depth -> (block kind, blocks per stage); stages have 64, 128, 256, 512 base channels.
RESNET_CFG: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

#: GoogLeNet Table 1: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "M" = max pool 3/2.
INCEPTION_V1_CFG: list[tuple[str, tuple[int, int, int, int, int, int]] | str] = [
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    "M",
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    "M",
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
]


def build_alexnet(input_size: int = 224, num_classes: int = NUM_CLASSES, *, seed: int = 0) -> keras.Model:
    """torchvision's AlexNet (one tower, 64-192-384-256-256 filters, adaptive 6x6 average pool)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = inputs
    for i, (filters, kernel, stride, pad) in enumerate(ALEXNET_CONVS, start=1):
        x = layers.ZeroPadding2D(pad, name=f"conv{i}_pad")(x)
        x = layers.Conv2D(filters, kernel, strides=stride, activation="relu", name=f"conv{i}")(x)
        if i in ALEXNET_POOL_AFTER:
            x = layers.MaxPooling2D(3, strides=2, name=f"pool{i}")(x)
    x = layers.AdaptiveAveragePooling2D((6, 6), name="avgpool")(x)
    x = _alexnet_classifier(x, num_classes)
    return keras.Model(inputs, x, name="alexnet")


class ChannelSlice(keras.layers.Layer):
    """Channels ``[begin:end)`` of an NHWC tensor: how one GPU takes its half (no parameters, no arithmetic)."""

    def __init__(self, begin: int, end: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.begin, self.end = begin, end

    def call(self, x: Any) -> Any:
        return x[..., self.begin:self.end]

    def compute_output_shape(self, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*shape[:-1], self.end - self.begin)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "begin": self.begin, "end": self.end}


def _two_gpu_conv(x, filters: int, kernel: int, stride: int, groups: int, name: str):
    """A conv split over ``groups`` GPUs: each half of the input channels feeds its half of the filters.

    Written as explicit towers (slice, conv per GPU, concatenate) rather than Keras'
    ``Conv2D(groups=2)``, which TensorFlow runs on CPU only through an XLA-compiled function
    that the profiler cannot look into.
    """
    if groups == 1:
        return layers.Conv2D(filters, kernel, strides=stride, activation="relu", name=name)(x)
    step = x.shape[-1] // groups
    towers = [layers.Conv2D(filters // groups, kernel, strides=stride, activation="relu", name=f"{name}_gpu{g}")(
        ChannelSlice(g * step, (g + 1) * step, name=f"{name}_gpu{g}_input")(x)) for g in range(groups)]
    return layers.Concatenate(name=name)(towers)


def build_alexnet_grouped(input_size: int = 227, num_classes: int = NUM_CLASSES, *, seed: int = 0) -> keras.Model:
    """The original two-GPU AlexNet: conv2, conv4 and conv5 connect only within one GPU's half."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = inputs
    for i, (filters, kernel, stride, pad, groups) in enumerate(ALEXNET_GROUPED_CONVS, start=1):
        if pad:
            x = layers.ZeroPadding2D(pad, name=f"conv{i}_pad")(x)
        x = _two_gpu_conv(x, filters, kernel, stride, groups, f"conv{i}")
        if i in ALEXNET_POOL_AFTER:
            x = layers.MaxPooling2D(3, strides=2, name=f"pool{i}")(x)
    x = _alexnet_classifier(x, num_classes)
    return keras.Model(inputs, x, name="alexnet_grouped")


def _alexnet_classifier(x, num_classes: int):
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.5, name="drop6")(x)
    x = layers.Dense(4096, activation="relu", name="fc6")(x)
    x = layers.Dropout(0.5, name="drop7")(x)
    x = layers.Dense(4096, activation="relu", name="fc7")(x)
    return layers.Dense(num_classes, name="fc8")(x)


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, relu: bool = True):
    """PyTorch-style conv (symmetric zero padding, no bias) + BatchNorm (+ ReLU)."""
    if kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual_block(x, kind: str, filters: int, stride: int, name: str):
    """One basic (3x3, 3x3) or bottleneck (1x1, 3x3 with the stride, 1x1 x4) block with its shortcut."""
    out_channels = filters * (4 if kind == "bottleneck" else 1)
    shortcut = x
    if stride != 1 or x.shape[-1] != out_channels:
        shortcut = _conv_bn(x, out_channels, 1, stride, f"{name}_0", relu=False)
    if kind == "basic":
        y = _conv_bn(x, filters, 3, stride, f"{name}_1")
        y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    else:
        y = _conv_bn(x, filters, 1, 1, f"{name}_1")
        y = _conv_bn(y, filters, 3, stride, f"{name}_2")
        y = _conv_bn(y, out_channels, 1, 1, f"{name}_3", relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def build_resnet(depth: int, input_size: int = 224, num_classes: int = NUM_CLASSES, *, seed: int = 0) -> keras.Model:
    """torchvision's ResNet-``depth`` (18, 34, 50, 101, 152) with keras.applications-style layer names."""
    if depth not in RESNET_CFG:
        raise UserError(f"ResNet depth must be one of {sorted(RESNET_CFG)}, got {depth}")
    keras.utils.set_random_seed(seed)
    kind, blocks = RESNET_CFG[depth]
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = _conv_bn(inputs, 64, 7, 2, "conv1")
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, (count, filters) in enumerate(zip(blocks, (64, 128, 256, 512)), start=2):
        for b in range(count):
            stride = 2 if b == 0 and stage > 2 else 1
            x = _residual_block(x, kind, filters, stride, f"conv{stage}_block{b + 1}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, x, name=f"resnet{depth}")


def _inception(x, widths: tuple[int, int, int, int, int, int], name: str, batch_norm: bool = False):
    """One inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, concatenated.

    ``batch_norm``: every conv is conv (with bias) -> BatchNorm -> ReLU, as in the course's variant.
    """
    n1, r3, n3, r5, n5, proj = widths

    def conv(t: Any, filters: int, kernel: int, suffix: str) -> Any:
        if not batch_norm:
            return layers.Conv2D(filters, kernel, padding="same", activation="relu", name=f"{name}_{suffix}")(t)
        t = layers.Conv2D(filters, kernel, padding="same", name=f"{name}_{suffix}")(t)
        t = layers.BatchNormalization(epsilon=1e-5, name=f"{name}_{suffix}_bn")(t)
        return layers.ReLU(name=f"{name}_{suffix}_relu")(t)

    b1 = conv(x, n1, 1, "1x1")
    b2 = conv(conv(x, r3, 1, "3x3_reduce"), n3, 3, "3x3")
    b3 = conv(conv(x, r5, 1, "5x5_reduce"), n5, 5, "5x5")
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    b4 = conv(b4, proj, 1, "pool_proj")
    return layers.Concatenate(name=f"{name}_output")([b1, b2, b3, b4])


def _googlenet_body(inputs: Any, batch_norm: bool) -> Any:
    """The paper's stem (conv 7x7/2, max pool, conv 1x1, conv 3x3, max pool, no BatchNorm) and the nine
    inception modules with their pools, up to global average pooling and dropout 0.4."""
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, activation="relu", name="conv1_7x7")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = layers.Conv2D(64, 1, activation="relu", name="conv2_3x3_reduce")(x)
    x = layers.Conv2D(192, 3, padding="same", activation="relu", name="conv2_3x3")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    pools = 3
    for item in INCEPTION_V1_CFG:
        if item == "M":
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{pools}")(x)
            pools += 1
        else:
            name, widths = item
            x = _inception(x, widths, f"inception_{name}", batch_norm)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return layers.Dropout(0.4, name="dropout")(x)


def build_inception_v1(input_size: int = 224, num_classes: int = NUM_CLASSES, *, seed: int = 0) -> keras.Model:
    """GoogLeNet (Szegedy et al. 2014, Table 1) without its auxiliary classifiers and LRN."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = _googlenet_body(inputs, batch_norm=False)
    x = layers.Dense(num_classes, name="loss3_classifier")(x)
    return keras.Model(inputs, x, name="inception_v1")


def build_inception_v1_bn(input_size: int = 224, num_classes: int = 2, *, seed: int = 0) -> keras.Model:
    """The course answer's GoogLeNet: BatchNorm after every inception conv, a 1024-unit hidden fc, 2 classes.

    The stem is the paper's, without BatchNorm; the head is global average pooling, dropout 0.4,
    fc 1024 + ReLU, fc ``num_classes``.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = _googlenet_body(inputs, batch_norm=True)
    x = layers.Dense(1024, activation="relu", name="fc1")(x)
    x = layers.Dense(num_classes, name="fc2")(x)
    return keras.Model(inputs, x, name="inception_v1_bn")


@dataclass(frozen=True)
class ZooEntry:
    """A model builder and the published numbers to compare with (input size rules: ``registry.SIZE_RULES``)."""

    builder: Callable[..., object] | None  # None: built by its own module (registry.get knows how)
    input_size: int  # the size the published numbers are for
    params: int | None  # published trainable parameters at input_size
    macs: float | None  # published multiply-accumulates at input_size
    source: str


MODELS: dict[str, ZooEntry] = {
    "alexnet": ZooEntry(build_alexnet, 224, 61_100_840, 0.71e9,
                        "torchvision AlexNet_Weights (61,100,840 params, 0.71 GFLOPS=MACs)"),
    "alexnet_grouped": ZooEntry(build_alexnet_grouped, 227, 60_965_224, 724e6,
                                "Caffe bvlc_alexnet (60,965,224 params); Sze et al. 2017 Table: 724M MACs"),
    "vgg19": ZooEntry(None, 224, 143_667_240, 19.63e9,
                      "torchvision VGG19_Weights (143,667,240 params, 19.63 GFLOPS=MACs)"),
    "resnet18": ZooEntry(lambda **k: build_resnet(18, **k), 224, 11_689_512, 1.81e9,
                         "torchvision ResNet18_Weights (11,689,512 params, 1.81 GFLOPS=MACs)"),
    "resnet50": ZooEntry(lambda **k: build_resnet(50, **k), 224, 25_557_032, 4.09e9,
                         "torchvision ResNet50_Weights.V1 (25,557,032 params, 4.09 GFLOPS=MACs)"),
    "resnet152": ZooEntry(lambda **k: build_resnet(152, **k), 224, 60_192_808, 11.51e9,
                          "torchvision ResNet152_Weights.V1 (60,192,808 params, 11.51 GFLOPS=MACs)"),
    "inception_v1": ZooEntry(build_inception_v1, 224, 6_998_552, 1.5e9,
                             "Szegedy et al. 2014: about 1.5 G multiply-adds; 6,998,552 params is the BVLC Caffe "
                             "GoogLeNet deploy net (Table 1 with conv biases, no auxiliary heads)"),
    "inception_v1_bn": ZooEntry(build_inception_v1_bn, 224, 7_039_122, None,
                                "the course answer's GoogLeNet (torchsummary: 7,039,122 trainable params): "
                                "BatchNorm after every inception conv, fc 1024, 2 classes"),
    "lenet5": ZooEntry(None, 32, 61_706, None, "LeCun et al. 1998 with a full C3"),
    "mlp": ZooEntry(None, 28, 535_818, None, "exercise 3.10's 784-512-256-10"),
}
#: name -> builder(input_size=, num_classes=, seed=) for :func:`tfbench.models.registry.get`, which builds
#: VGG19, LeNet-5 and the MLP from their own modules (their entries carry only the published numbers).
BUILDERS: dict[str, Callable[..., object]] = {name: e.builder for name, e in MODELS.items() if e.builder is not None}
