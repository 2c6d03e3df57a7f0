"""ResizeNormalise: the input pipeline's resize, uint8 rounding and normalisation as one C++ op.

Operator fusion applied to the data side (``custom_ops/resize_normalise/resize_normalise.cc``).
After decoding, the TFRecord pipeline spent its time in ``tf.image.resize``, a rounding step
and, per batch, a normalisation (cast, channel reversal, mean subtraction) whose kernels each
wrote their whole result to memory.  The fused kernel computes the same numbers in one pass
over each output row, while the decoded window is still in cache: bit-identical in caffe mode
(VGG19's; tested), within one float32 ulp in tf and torch modes.

Why by hand: this is the point of the exercise (a fused operator, measured), and TensorFlow has
no op that resizes and normalises in one pass.  Where the library cannot be built (no C++
compiler), :func:`resize_normalise` with ``backend="auto"`` uses the composite of TensorFlow ops
it replaces, after one warning.
"""

from __future__ import annotations

import warnings
from typing import Any

import tensorflow as tf

from tfbench.data import preprocess as pp
from tfbench.errors import UserError
from tfbench.data.images import ORDERS
from tfbench.ops import build

LIBRARY = "resize_normalise"  # custom_ops/resize_normalise/
BACKENDS = ("auto", "cpp", "fallback")

_unavailable: str | None = None  # why the library could not be built or loaded, once known


@tf.autograph.experimental.do_not_convert
def load_library() -> Any:
    """The loaded C++ op module (built on first use); raises ``build.BuildError`` if it cannot be built."""
    return build.load_once(LIBRARY)


@tf.autograph.experimental.do_not_convert
def available() -> bool:
    """True when the C++ op can be used; the first failure is remembered and warned about once."""
    global _unavailable
    if _unavailable is not None:
        return False
    try:
        load_library()
        return True
    except build.BuildError as err:
        _unavailable = str(err)
        warnings.warn(f"ResizeNormalise C++ op unavailable, using TensorFlow ops instead: {err}", stacklevel=2)
        return False


def composite(pixels, size: int, spec: pp.InputSpec, *, channel_order: str):
    """What the fused op replaces: ``tf.image.resize`` (bilinear) -> round to uint8 -> normalise."""
    return pp.tf_normalise(pp.tf_to_uint8(pp.tf_resize(pixels, size, size)), spec, channel_order=channel_order)


def resize_normalise(pixels, size: int, spec: pp.InputSpec, *, channel_order: str, backend: str = "auto"):
    """``uint8 HxWx3`` pixels in ``channel_order`` -> the network input ``float32 size x size x 3`` for ``spec``."""
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if channel_order not in ORDERS:
        raise UserError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    if backend == "fallback" or (backend == "auto" and not available()):
        return composite(pixels, size, spec, channel_order=channel_order)
    return load_library().resize_normalise(
        pixels, out_height=size, out_width=size, mean=list(spec.mean), std=list(spec.std),
        reverse_channels=channel_order != spec.channel_order)
