"""Compute dtypes for the explicit-variable models: 16-bit arithmetic over float32 master weights.

What Keras' ``mixed_bfloat16``/``mixed_float16`` policies do for layers, done by hand for the
``tf.Module`` models: variables stay float32 (so small optimizer updates are not rounded away),
every call casts inputs and weights to the compute dtype, and the logits are cast back to
float32 so the softmax and the loss see float32 range and precision.  The gradient of
``tf.cast`` is a cast back, so the float32 variables receive float32 gradients.
"""

from __future__ import annotations

import tensorflow as tf

#: the compute dtypes a module accepts; float32 is plain single precision.
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def compute_dtype(dtype: str | tf.DType | None) -> tf.DType:
    """``dtype`` as a ``tf.DType`` after checking it is one of :data:`COMPUTE_DTYPES` (None: float32)."""
    name = "float32" if dtype is None else tf.as_dtype(dtype).name if isinstance(dtype, tf.DType) else str(dtype)
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {dtype!r}")
    return tf.as_dtype(name)


def keras_policy(dtype: str | tf.DType | None) -> str:
    """The Keras dtype policy with this compute dtype and float32 variables: float32, mixed_bfloat16, mixed_float16."""
    name = compute_dtype(dtype).name
    return "float32" if name == "float32" else f"mixed_{name}"
