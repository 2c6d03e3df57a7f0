"""InstanceNorm: instance normalisation as one fused C++ op, forward and backward (course exercise 5.7).

A custom op pays when it replaces something TensorFlow does badly.  Instance normalisation written
with TensorFlow ops (:func:`composite`) runs mean, subtract, square, mean, add, rsqrt, multiply and
add as separate kernels, each a pass over memory, and about twice as many backwards.  The C++ op
(``custom_ops/instance_norm/instance_norm.cc``) computes each image's channel statistics in one pass
over the plane (``variance="welford"``, the default: measured a little faster) or two over a plane
that is still in cache (``variance="two_pass"``), and normalises, scales and shifts in one
more; its gradient op (``InstanceNormGrad``) needs two passes.  Hand-written on purpose: the fused
kernel is the point of the exercise.

The gradient is registered from Python (``tf.RegisterGradient("InstanceNorm")``) and calls the
backward op.  Backends, per call or for the process (:mod:`tfbench.operators.backend`,
``$TFBENCH_OPS_BACKEND``): ``"cpp"``, ``"fallback"`` (:func:`composite`, with the same checks and
errors) or ``"auto"`` (default).  float32 and float64, NHWC.

Run: ``python -m tfbench.ops build --op instance_norm``; ``python -m tfbench.ops bench --op instance_norm``
times it against the composite; ``python -m tfbench.style realtime`` uses it as the ``fused`` norm.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfbench.operators import backend as backend_rule
from tfbench.operators import build

OP_NAME = "InstanceNorm"
LIBRARY = "instance_norm"  # custom_ops/instance_norm/
FALLBACK = "TensorFlow ops (reduce_mean, squared_difference, rsqrt)"
DTYPES = (tf.float32, tf.float64)
EPSILON = 1e-3  # Keras GroupNormalization's default, as tfbench.operators.instance_norm
VARIANCES = ("welford", "two_pass")


@tf.autograph.experimental.do_not_convert
def load_library() -> Any:
    """The loaded C++ op module (built on first use); raises ``BuildError`` if it cannot be built."""
    return build.load_once(LIBRARY)


def resolve_backend(backend: str | None = None) -> str:
    """``"cpp"`` or ``"fallback"``: what ``backend`` (or ``$TFBENCH_OPS_BACKEND``) means on this machine."""
    return backend_rule.resolve(LIBRARY, backend, fallback=FALLBACK)


def composite(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float = EPSILON) -> tf.Tensor:
    """Instance normalisation as TensorFlow ops: what the fused op replaces (and its fallback)."""
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=[1, 2], keepdims=True)
    return (x - mean) * tf.math.rsqrt(variance + epsilon) * gamma + beta


def instance_norm(x: Any, gamma: Any, beta: Any, *, epsilon: float = EPSILON, variance: str = "welford",
                  backend: str | None = None, name: str | None = None) -> tf.Tensor:
    """Normalise each image and channel of NHWC ``x`` over height and width, then ``* gamma + beta`` ([C] each)."""
    x = tf.convert_to_tensor(x)
    if x.dtype not in DTYPES:
        raise TypeError(f"{OP_NAME} supports {', '.join(d.name for d in DTYPES)}; x has dtype {x.dtype.name}")
    gamma = tf.convert_to_tensor(gamma, dtype=x.dtype)
    beta = tf.convert_to_tensor(beta, dtype=x.dtype)
    if variance not in VARIANCES:
        raise ValueError(f"{OP_NAME}: variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
    if resolve_backend(backend) == "cpp":
        return load_library().instance_norm(x, gamma, beta, epsilon=epsilon, variance=variance, name=name)[0]
    with tf.name_scope(name or "InstanceNormFallback"):
        _check(x, gamma, beta, epsilon)
        return composite(x, gamma, beta, float(np.float32(epsilon)))  # the op's attr is a float32


def _check(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: float) -> None:
    """The C++ op's checks for the fallback: InvalidArgumentError eagerly, ValueError while tracing."""
    problem = _problem(x.shape, gamma.shape, beta.shape, epsilon)
    if problem is None:
        return
    message = f"{OP_NAME}: {problem}"
    if tf.executing_eagerly():
        raise tf.errors.InvalidArgumentError(None, None, message)
    raise ValueError(message)


def _problem(x: tf.TensorShape, gamma: tf.TensorShape, beta: tf.TensorShape, epsilon: float) -> str | None:
    """What is wrong with these shapes (as far as they are known) and epsilon, in the C++ op's words."""
    if x.rank is not None and x.rank != 4:
        return f"x must be 4-D [batch, height, width, channels] (NHWC), got shape {x.as_list()}"
    if not 0 < epsilon < float("inf"):
        return f"epsilon must be positive and finite, got {epsilon}"
    channels = x[-1] if x.rank is not None else None  # an int, or None where unknown
    for label, shape in (("gamma", gamma), ("beta", beta)):
        if shape.rank is not None and (shape.rank != 1 or None not in (channels, shape[0]) and shape[0] != channels):
            return (f"{label} must have shape [{channels}] (x's channels; x has shape {x.as_list()}), "
                    f"got {shape.as_list()}")
    if x.rank == 4 and 0 in (x[1], x[2]) and x[0] not in (0, None) and x[3] not in (0, None):
        return f"x has no pixels to normalise over (height x width = 0), shape {x.as_list()}"
    return None


@tf.RegisterGradient(OP_NAME)
def _instance_norm_grad(op: tf.Operation, dy: tf.Tensor, dmean: tf.Tensor | None,
                        dinv_std: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """dx, dgamma, dbeta from the fused backward op, which also takes the gradients reaching the outputs
    mean and inv_std (zeros when only y is used, as in :func:`instance_norm`)."""
    x, gamma, _ = op.inputs
    _, mean, inv_std = op.outputs
    dmean = tf.zeros_like(mean) if dmean is None else dmean
    dinv_std = tf.zeros_like(inv_std) if dinv_std is None else dinv_std
    return tuple(load_library().instance_norm_grad(dy, x, gamma, mean, inv_std, dmean, dinv_std))
