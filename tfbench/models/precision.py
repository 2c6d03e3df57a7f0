"""Compute dtypes for the explicit-variable models: 16-bit arithmetic over float32 master weights.

What Keras' ``mixed_bfloat16``/``mixed_float16`` policies do for layers, done by hand for the
``tf.Module`` models: variables stay float32 (so small optimizer updates are not rounded away),
every call casts inputs and weights to the compute dtype, and the logits are cast back to
float32 so the softmax and the loss see float32 range and precision.  The gradient of
``tf.cast`` is a cast back, so the float32 variables receive float32 gradients.

:func:`clone_under_policy` does the same to a Keras model someone already has: its layers
rebuilt under a policy with the same weights.
"""

from __future__ import annotations

from typing import Any

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


#: the Keras policies, one per compute dtype: float32, mixed_bfloat16, mixed_float16.
KERAS_POLICIES = tuple(keras_policy(d) for d in COMPUTE_DTYPES)


def clone_under_policy(model: Any, policy: str, *, float32_outputs: bool = False) -> Any:
    """The same Keras layers and weights under ``policy`` (float32 variables, the policy's compute dtype).

    ``keras.models.clone_model`` rebuilds each layer from its config with ``dtype`` set to the
    policy (input layers keep their dtype), then the weights are copied.  With
    ``float32_outputs`` the layers that give the model's outputs stay float32, as mixed-precision
    models keep their last softmax: the output and a loss on it see float32 range and precision.
    A model Keras cannot clone (a subclassed one) raises Keras' own ``ValueError``/``TypeError``.
    """
    import keras

    if policy not in KERAS_POLICIES:
        raise ValueError(f"policy must be one of {', '.join(KERAS_POLICIES)}, got {policy!r}")
    # the layer that made each output tensor (Keras records it on the tensor: its ``_keras_history``)
    outputs = {t._keras_history[0].name for t in getattr(model, "outputs", None) or []} if float32_outputs else set()

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if "dtype" in config and type(layer).__name__ != "InputLayer":
            config["dtype"] = "float32" if layer.name in outputs else policy
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin
