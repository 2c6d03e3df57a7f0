"""Normalisation folded into the first convolution: the pipeline hands ``uint8`` pixels to the model.

Graph engineering on the data side (course exercise 4.7 with chapter 5's folding).  A
normalisation ``x' = (x - mean) / std`` per input channel followed by a convolution ``W * x' + b``
is one affine map of the pixels, so it can be written into the convolution's weights:

    W'[..., c, :] = W[..., c, :] / std[c]        b' = b - sum over taps and c of W[..., c, :] * mean[c] / std[c]

and ``W' * x + b'`` equals ``W * x' + b`` up to float rounding.  The input pipeline then batches
``uint8`` pixels (a quarter of the bytes of float32) and never normalises
(:func:`tfbench.data.reader.make_dataset` with ``normalise=False``).

One catch: with ``padding="same"`` the convolution pads its input with zeros, and a zero of the
normalised input is the *mean* in pixel space, not 0.  Folded weights over a zero-padded pixel
image are therefore wrong on the border of the output.  :func:`folded_conv2d` pads the pixels
with the per-channel mean itself and convolves with ``"valid"`` padding, which is exact;
the cast, the padding and the mean frame are one XLA-compiled loop over the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfbench.data import preprocess as pp
from tfbench.plumbing.errors import UserError


def affine(spec: pp.InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` per channel, on the 0..255 scale, such that ``spec``'s input is ``(x - mean) / std``."""
    if spec.keras_mode == "tf":
        return np.full(3, 127.5, np.float64), np.full(3, 127.5, np.float64)
    return np.asarray(spec.mean, np.float64), np.asarray(spec.std, np.float64)


def fold_normalisation(kernel: Any, bias: Any, spec: pp.InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """The first convolution's ``(kernel HxWxCinxCout, bias Cout)`` for pixels instead of ``spec``'s input.

    The pixels are in ``spec.channel_order`` on the 0..255 scale (float or uint8).  Computed in
    float64, returned as float32.
    """
    kernel = np.asarray(kernel, np.float64)
    bias = np.asarray(bias, np.float64)
    if kernel.ndim != 4 or kernel.shape[2] != 3 or bias.shape != (kernel.shape[3],):
        raise UserError(f"fold_normalisation needs a kernel HxWx3xCout and a bias of Cout values, got "
                        f"{kernel.shape} and {bias.shape}")
    mean, std = affine(spec)
    folded_kernel = kernel / std[None, None, :, None]
    folded_bias = bias - np.einsum("hwco,c->o", folded_kernel, mean)
    return folded_kernel.astype(np.float32), folded_bias.astype(np.float32)


def _same_padding(size: int) -> tuple[int, int]:
    """TensorFlow's "same" padding for stride 1: (before, after)."""
    total = size - 1
    return total // 2, total - total // 2


def mean_padded(pixels: Any, spec: pp.InputSpec, kernel_size: tuple[int, int]) -> tf.Tensor:
    """``uint8 NxHxWx3`` pixels -> float32, padded for a stride-1 "same" convolution with ``spec``'s mean."""
    mean, _ = affine(spec)
    (top, bottom), (left, right) = _same_padding(kernel_size[0]), _same_padding(kernel_size[1])
    x = tf.pad(tf.cast(pixels, tf.float32), [[0, 0], [top, bottom], [left, right], [0, 0]])
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    border = (rows < top) | (rows >= height - bottom) | (cols < left) | (cols >= width - right)
    return x + tf.cast(border, tf.float32)[None, :, :, None] * tf.constant(mean, tf.float32)


def folded_conv2d(kernel: Any, bias: Any, spec: pp.InputSpec, *, padding: str = "same",
                  xla_input: bool = True) -> Any:
    """A function ``uint8 NxHxWx3 pixels -> conv(normalise(pixels)) + bias`` with the normalisation folded in.

    ``kernel``, ``bias``: the convolution as it is for ``spec``'s normalised input (stride 1).
    ``padding="same"`` pads with the mean (exact, see the module docstring); ``xla_input``
    compiles that input step into one loop.
    """
    if padding not in ("same", "valid"):
        raise UserError(f"padding must be 'same' or 'valid', got {padding!r}")
    folded_kernel, folded_bias = fold_normalisation(kernel, bias, spec)
    w, b = tf.constant(folded_kernel), tf.constant(folded_bias)
    size = folded_kernel.shape[:2]

    def prepare(pixels: Any) -> tf.Tensor:
        return mean_padded(pixels, spec, size) if padding == "same" else tf.cast(pixels, tf.float32)

    prepare_fn = tf.function(prepare, jit_compile=True) if xla_input else prepare

    def conv(pixels: Any) -> tf.Tensor:
        return tf.nn.bias_add(tf.nn.conv2d(prepare_fn(pixels), w, strides=1, padding="VALID"), b)

    return conv
