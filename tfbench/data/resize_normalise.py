"""ResizeNormalise: the input pipeline's resize, uint8 rounding and normalisation as one C++ op.

Operator fusion applied to the data side (``custom_ops/resize_normalise/resize_normalise.cc``).
After decoding, the TFRecord pipeline spent its time in ``tf.image.resize``, a rounding step
and, per batch, a normalisation (cast, channel reversal, mean subtraction) whose kernels each
wrote their whole result to memory.  The fused kernel computes the same numbers in one pass
over each output row, while the decoded window is still in cache: bit-identical in caffe mode
(VGG19's; tested), within one float32 ulp in tf and torch modes.

Why by hand: this is the point of the exercise (a fused operator, measured), and TensorFlow has
no op that resizes and normalises in one pass.  Where the library cannot be built (no C++
compiler), :func:`resize_normalise` uses the composite of TensorFlow ops it replaces, after one
warning: the same backend rule as every custom op (:mod:`tfbench.ops.backend`, ``$TFBENCH_OPS_BACKEND``).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfbench.data import preprocess as pp
from tfbench.data.images import ORDERS
from tfbench.errors import UserError
from tfbench.ops import backend as backend_rule
from tfbench.ops import build

LIBRARY = "resize_normalise"  # custom_ops/resize_normalise/
FALLBACK = "tf.image.resize + round + normalise"


@tf.autograph.experimental.do_not_convert
def load_library() -> Any:
    """The loaded C++ op module (built on first use); raises ``build.BuildError`` if it cannot be built."""
    return build.load_once(LIBRARY)


def available() -> bool:
    """True when ``backend="auto"`` uses the C++ op here (the first failure is warned about once)."""
    return backend_rule.resolve(LIBRARY, "auto", fallback=FALLBACK) == "cpp"


def composite(pixels: Any, size: int, spec: pp.InputSpec, *, channel_order: str) -> tf.Tensor:
    """What the fused op replaces: ``tf.image.resize`` (bilinear) -> round to uint8 -> normalise."""
    return pp.tf_normalise(pp.tf_to_uint8(pp.tf_resize(pixels, size, size)), spec, channel_order=channel_order)


def resize_normalise(pixels: Any, size: int, spec: pp.InputSpec, *, channel_order: str,
                     backend: str | None = None, normalise: bool = True, box: Any = None) -> tf.Tensor:
    """``uint8 HxWx3`` pixels in ``channel_order`` -> the network input ``float32 size x size x 3`` for ``spec``.

    ``normalise=False``: the resized, rounded ``uint8`` pixels in ``spec``'s channel order, for a
    model whose first convolution does the normalisation (:mod:`tfbench.data.fold_normalise`).
    ``box``: ``[top, left, height, width]`` (int32) of the pixels to resize; the op reads them in
    place (``CropResizeNormalise``), so the window is never sliced out into a tensor of its own.
    """
    if channel_order not in ORDERS:
        raise UserError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    reverse = channel_order != spec.channel_order
    if backend_rule.resolve(LIBRARY, backend, fallback=FALLBACK) == "fallback":
        if box is not None:
            box = tf.cast(box, tf.int32)
            pixels = tf.slice(pixels, tf.stack([box[0], box[1], 0]), tf.stack([box[2], box[3], 3]))
        if not normalise:
            pixels = pp.tf_to_uint8(pp.tf_resize(pixels, size, size))
            return tf.reverse(pixels, axis=[-1]) if reverse else pixels
        return composite(pixels, size, spec, channel_order=channel_order)
    attrs = dict(out_height=size, out_width=size, mean=list(spec.mean), std=list(spec.std),
                 reverse_channels=reverse, out_type=tf.float32 if normalise else tf.uint8)
    if box is not None:
        return load_library().crop_resize_normalise(pixels, tf.cast(box, tf.int32), **attrs)
    return load_library().resize_normalise(pixels, **attrs)
