"""TfbenchConv2D: ``tf.nn.conv2d`` computed six ways in C++, its gradients, and the fallback.

The convolution opened up (course exercises 5.7 and 6.11).  ``custom_ops/conv2d/`` holds one op,
``TfbenchConv2D``, whose ``algorithm`` attribute picks how it computes the same NHWC float32
convolution as ``tf.nn.conv2d`` (strides, ``SAME``/``VALID`` padding, no dilation):

- ``loops``: the seven-deep loop nest, the reference;
- ``tile_oc``, ``tile_plane``, ``tile_ic``: three tilings of it (output channels blocked to a register
  tile; the output plane tiled so a tile's input window stays in L2; input channels blocked so a block
  of weights stays in L1), tile sizes derived from this machine's caches;
- ``im2col``: image patches times a GEMM blocked the BLIS way (what Eigen does when oneDNN is off);
- ``winograd``: F(2x2, 3x3), for 3x3 filters at stride 1.

:func:`schedule` returns what the kernels see of the machine (vector extension, caches read from
sysfs, threads) and the tile sizes an algorithm picks for a shape.

Gradients are registered from Python (``tf.RegisterGradient("TfbenchConv2D")``) and computed by the
same op: the input gradient is the convolution of the (stride-dilated, padded) output gradient with
the flipped, transposed filter; the filter gradient is the convolution of the input, batch and
channels swapped, with the output gradient as the filter.  Where the spatial sizes are not known
when the graph is built, TensorFlow's own backprop ops stand in.

Backends (``backend=`` or ``$TFBENCH_OPS_BACKEND``, the rule of :mod:`tfbench.operators.backend`): ``cpp``,
``fallback`` (``tf.nn.conv2d``, after the same checks of the attributes) or ``auto``.

Run: ``python -m tfbench.conv`` (every algorithm on VGG19's and LeNet-5's layers against oneDNN and
Eigen), ``python -m tfbench.ops info``.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow as tf

from tfbench.operators import backend as backend_rule
from tfbench.operators import build

OP_NAME = "TfbenchConv2D"
LIBRARY = "conv2d"  # custom_ops/conv2d/
FALLBACK = "tf.nn.conv2d"
ALGORITHMS = ("loops", "tile_oc", "tile_plane", "tile_ic", "im2col", "winograd")
TILINGS = ("tile_oc", "tile_plane", "tile_ic")
PADDINGS = ("SAME", "VALID")


# Not converted by AutoGraph: called while a tf.function traces (see tfbench.operators.backend).
@tf.autograph.experimental.do_not_convert
def load_library() -> Any:
    """The loaded C++ op module (built on first use); raises ``BuildError`` if it cannot be built."""
    return build.load_once(LIBRARY)


def resolve_backend(backend: str | None = None) -> str:
    """``"cpp"`` or ``"fallback"``: what ``backend`` (or ``$TFBENCH_OPS_BACKEND``) means on this machine."""
    return backend_rule.resolve(LIBRARY, backend, fallback=FALLBACK)


def _invalid(message: str) -> Exception:
    """The op's kind of error: InvalidArgumentError eagerly, ValueError while tracing (as a shape function)."""
    if tf.executing_eagerly():
        return tf.errors.InvalidArgumentError(None, None, message)
    return ValueError(message)


def _four(value: int | Sequence[int], what: str) -> list[int]:
    """``strides`` / ``dilations`` as tf.nn.conv2d takes them (an int, two, or four values) -> four values."""
    values = [value] if isinstance(value, int) else list(value)
    if len(values) == 1:
        return [1, int(values[0]), int(values[0]), 1]
    if len(values) == 2:
        return [1, int(values[0]), int(values[1]), 1]
    if len(values) == 4:
        return [int(v) for v in values]
    raise _invalid(f"{OP_NAME}: {what} must be an int or have 1, 2 or 4 elements, got {values}")


def check_attributes(algorithm: str, padding: str, strides: list[int], dilations: list[int],
                     filter_shape: Sequence[int | None]) -> None:
    """The op's checks of its attributes, in Python: the fallback raises what the C++ op raises."""
    if algorithm not in ALGORITHMS:
        raise _invalid(f"{OP_NAME}: algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    if padding not in PADDINGS:
        raise _invalid(f"{OP_NAME}: padding {padding!r} is not SAME or VALID")
    if strides[0] != 1 or strides[3] != 1 or min(strides) < 1:
        raise _invalid(f"{OP_NAME}: strides must be [1, sh, sw, 1] with sh, sw >= 1, got {strides}")
    if dilations != [1, 1, 1, 1]:
        raise _invalid(f"{OP_NAME}: dilations must be [1,1,1,1] (dilated convolutions are not implemented), "
                       f"got {dilations}")
    if algorithm == "winograd" and (list(filter_shape[:2]) != [3, 3] or strides != [1, 1, 1, 1]):
        raise _invalid(f"{OP_NAME}: algorithm 'winograd' (F(2x2,3x3)) needs a 3x3 filter and strides [1,1,1,1], "
                       f"got filter {list(filter_shape)} and strides {strides}")


def conv2d(input: Any, filters: Any, strides: int | Sequence[int] = 1, padding: str = "SAME", *,
           algorithm: str = "im2col", dilations: int | Sequence[int] = 1, backend: str | None = None,
           name: str | None = None) -> tf.Tensor:
    """``tf.nn.conv2d(input, filters, strides, padding)`` (NHWC, float32) computed by ``algorithm``."""
    x = tf.convert_to_tensor(input)
    w = tf.convert_to_tensor(filters)
    for what, t in (("input", x), ("filter", w)):
        if t.dtype != tf.float32:
            raise TypeError(f"{OP_NAME} computes in float32; {what} has dtype {t.dtype.name}")
    strides4, dilations4 = _four(strides, "strides"), _four(dilations, "dilations")
    if resolve_backend(backend) == "cpp":
        return load_library().tfbench_conv2d(x, w, strides=strides4, padding=padding, dilations=dilations4,
                                             algorithm=algorithm, name=name)
    filter_shape = w.shape.as_list() if w.shape.rank is not None else [None] * 4
    check_attributes(algorithm, padding, strides4, dilations4, filter_shape)
    check_shapes(x.shape, w.shape, padding)
    if x.shape[0] == 0 and x.shape[1:].is_fully_defined() and w.shape.is_fully_defined():
        # an empty batch: tf.nn.conv2d (oneDNN) hands back its input unchanged, with the input's channels
        (oh, _, _), (ow, _, _) = (same_padding(size, k, s, padding)
                                  for size, k, s in zip(x.shape[1:3], w.shape[:2], strides4[1:3]))
        return tf.zeros([0, oh, ow, w.shape[3]], tf.float32, name=name)
    return tf.nn.conv2d(x, w, strides4, padding, name=name or "TfbenchConv2DFallback")


def check_shapes(input_shape: tf.TensorShape, filter_shape: tf.TensorShape, padding: str) -> None:
    """The op's checks of the shapes, in Python, where they are known (tf.nn.conv2d aborts the process on a 3-D
    input on some TensorFlow versions instead of raising)."""
    if input_shape.rank is not None and input_shape.rank != 4:
        raise _invalid(f"{OP_NAME}: input must be 4-D [batch, height, width, channels] (NHWC), "
                       f"got shape {input_shape.as_list()}")
    if filter_shape.rank is not None and filter_shape.rank != 4:
        raise _invalid(f"{OP_NAME}: filter must be 4-D [height, width, in_channels, out_channels] (HWIO), "
                       f"got shape {filter_shape.as_list()}")
    if input_shape.rank is None or filter_shape.rank is None:
        return
    (_, h, w, c), (kh, kw, fc, _) = input_shape.as_list(), filter_shape.as_list()
    if c is not None and fc is not None and c != fc:
        raise _invalid(f"{OP_NAME}: input has {c} channels (shape {input_shape.as_list()}) but filter "
                       f"{filter_shape.as_list()} expects {fc}")
    for what, size, k in (("height", h, kh), ("width", w, kw)):
        if padding == "VALID" and size is not None and k is not None and size < k:
            raise _invalid(f"{OP_NAME}: with padding VALID the input {what} ({size}) must be at least the filter "
                           f"{what} ({k})")


def schedule(input_shape: Sequence[int], filter_shape: Sequence[int], strides: int | Sequence[int] = 1,
             padding: str = "SAME", *, algorithm: str = "im2col") -> str:
    """The machine as the kernels see it and ``algorithm``'s schedule (tile sizes, what lives where) for a shape."""
    text = load_library().tfbench_conv2d_schedule(
        tf.constant(list(input_shape), tf.int64), tf.constant(list(filter_shape), tf.int64),
        strides=_four(strides, "strides"), padding=padding, algorithm=algorithm)
    return text.numpy().decode()


def vector_extension() -> str:
    """The vector extension the built library uses: ``avx512``, ``avx2+fma`` or ``portable``."""
    first = schedule([1, 1, 1, 1], [1, 1, 1, 1], algorithm="loops").splitlines()[0]
    return first.split()[2]


# -------------------------------------------------------------------------------------------- gradients


def same_padding(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
    """``(output size, padding before, padding after)`` along one dimension, as tf.nn.conv2d computes them."""
    if padding == "VALID":
        return (size - kernel) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + kernel - size)
    return out, total // 2, total - total // 2


def _dilate(dy: tf.Tensor, sh: int, sw: int) -> tf.Tensor:
    """dy with sh - 1 zero rows and sw - 1 zero columns between its own: where a strided conv's outputs sat."""
    if sh == 1 and sw == 1:
        return dy
    n, oh, ow, k = tf.shape(dy)[0], dy.shape[1], dy.shape[2], tf.shape(dy)[3]
    spaced = tf.pad(dy[:, :, None, :, None, :], [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
    spaced = tf.reshape(spaced, tf.stack([n, oh * sh, ow * sw, k]))
    return spaced[:, :(oh - 1) * sh + 1, :(ow - 1) * sw + 1, :]


def _usable(algorithm: str, kernel: Sequence[int]) -> str:
    """``algorithm`` if it can compute a stride-1 VALID convolution with this filter size, else ``im2col``."""
    return algorithm if algorithm != "winograd" or tuple(kernel) == (3, 3) else "im2col"


def input_gradient(dy: tf.Tensor, w: tf.Tensor, input_hw: Sequence[int], strides: Sequence[int], padding: str,
                   algorithm: str) -> tf.Tensor:
    """dL/dinput = conv(dilated dy padded by (k - 1 - pad), filter flipped in space with in/out swapped), VALID.

    input[ih] fed output[oh] through filter row kh when ih = oh * s + kh - pad_top; reading that sum
    from the input's side is a stride-1 correlation of the dilated dy with the filter turned around.
    """
    (h, wd), (sh, sw) = input_hw, strides[1:3]
    kh, kw = w.shape[0], w.shape[1]
    oh, top, _ = same_padding(h, kh, sh, padding)
    ow, left, _ = same_padding(wd, kw, sw, padding)
    d = _dilate(dy, sh, sw)
    d = tf.pad(d, [[0, 0], [kh - 1 - top, h + top - (oh - 1) * sh - 1],
                   [kw - 1 - left, wd + left - (ow - 1) * sw - 1], [0, 0]])
    flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])
    return load_library().tfbench_conv2d(d, flipped, strides=[1, 1, 1, 1], padding="VALID",
                                         algorithm=_usable(algorithm, (kh, kw)))


def filter_gradient(x: tf.Tensor, dy: tf.Tensor, filter_hw: Sequence[int], strides: Sequence[int], padding: str,
                    algorithm: str) -> tf.Tensor:
    """dL/dfilter[kh, kw, c, k] = sum over n, i, j of padded_x[n, i*s + kh, j*s + kw, c] * dy[n, i, j, k].

    A convolution again: the padded input with batch and channels swapped ([c, h, w, n]) is the
    image, the dilated dy with its batch moved in ([oh, ow, n, k]) is the filter; the first kh x kw
    outputs, turned back to HWIO, are the gradient.
    """
    (kh, kw), (sh, sw) = filter_hw, strides[1:3]
    h, wd = x.shape[1], x.shape[2]
    _, top, bottom = same_padding(h, kh, sh, padding)
    _, left, right = same_padding(wd, kw, sw, padding)
    padded = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
    d = _dilate(dy, sh, sw)
    image = tf.transpose(padded, [3, 1, 2, 0])
    kernel = tf.transpose(d, [1, 2, 0, 3])
    out = load_library().tfbench_conv2d(image, kernel, strides=[1, 1, 1, 1], padding="VALID",
                                        algorithm=_usable(algorithm, d.shape[1:3]))
    return tf.transpose(out[:, :kh, :kw, :], [1, 2, 0, 3])


@tf.RegisterGradient(OP_NAME)
def _tfbench_conv2d_grad(op: tf.Operation, grad: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns (conv(dilated, padded grad, flipped filter), conv(input^T, dilated grad)), by the same op."""
    x, w = op.inputs
    strides = list(op.get_attr("strides"))
    padding = op.get_attr("padding").decode()
    algorithm = op.get_attr("algorithm").decode()
    known = x.shape.rank == 4 and None not in x.shape[1:3] and w.shape.is_fully_defined() and \
        grad.shape.rank == 4 and None not in grad.shape[1:3]
    if not known:  # spatial sizes only known when the graph runs: TensorFlow's own backprop ops
        dx = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=w, out_backprop=grad, strides=strides,
                                            padding=padding)
        dw = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(w), out_backprop=grad, strides=strides,
                                             padding=padding)
        return dx, dw
    dx = input_gradient(grad, w, x.shape[1:3], strides, padding, algorithm)
    dw = filter_gradient(x, grad, w.shape[:2], strides, padding, algorithm)
    return dx, dw
