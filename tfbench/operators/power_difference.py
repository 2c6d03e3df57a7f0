"""PowerDifference(x, y, pow) = (x - y) ** pow: the C++ op, its gradient, and a pure-TF twin.

The course lab's custom operator (exercises 5.6 and 5.7), done against today's TensorFlow.
The op and its CPU kernel are C++ (``custom_ops/power_difference/power_difference.cc``); this
module loads them (building on first use, see :mod:`tfbench.operators.build`) and registers the
gradient from Python with ``tf.RegisterGradient("PowerDifference")``, the way TensorFlow
registers the gradients of its own ops in ``math_grad.py``.

Backends, chosen per call (``backend=``) or for the process (``$TFBENCH_OPS_BACKEND``):
- ``"cpp"``: the C++ op; fails if it cannot be built;
- ``"fallback"``: ``tf.pow(x - y, pow)`` wrapped in ``tf.custom_gradient`` with the *same*
  gradient function, and the same checks, so both backends give the same results (up to the
  last bit of ``pow``: Eigen's in ``tf.pow``, C's in the kernel) and the same errors;
- ``"auto"`` (default): the C++ op, or the fallback with a warning when it cannot be built
  (for example on a machine without a C++ compiler).

Gradients (``d = x - y``, each reduced back over the dimensions that broadcasting added):
``dz/dx = pow * d**(pow - 1)`` (0 where ``pow == 0``: z is the constant 1 there),
``dz/dy = -dz/dx``, ``dz/dpow = sum(z * log(d))`` over the elements where ``d > 0``; elsewhere
that term is 0 (as in TensorFlow's own ``Pow`` gradient): at ``d == 0`` it is the limit for
``pow > 0``, and for ``d < 0`` the real function of ``pow`` is undefined at non-integers.
Upstream gradients of exactly 0 give 0 even where the local derivative is inf or NaN
(``tf.math.multiply_no_nan``, as ``Pow``'s gradient does).

Run: ``python -m tfbench.ops build`` (build), ``python -m tfbench.ops demo`` (in a graph).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfbench.operators import backend as backend_rule
from tfbench.operators import build

OP_NAME = "PowerDifference"
LIBRARY = "power_difference"  # custom_ops/power_difference/
DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
FALLBACK = "tf.pow(x - y, pow)"


# Not converted by AutoGraph: called while a tf.function traces (see tfbench.operators.backend).
@tf.autograph.experimental.do_not_convert
def load_library() -> Any:
    """The loaded C++ op module (built on first use); raises ``BuildError`` if it cannot be built."""
    return build.load_once(LIBRARY)


def resolve_backend(backend: str | None = None) -> str:
    """``"cpp"`` or ``"fallback"``: what ``backend`` (or ``$TFBENCH_OPS_BACKEND``) means on this machine."""
    return backend_rule.resolve(LIBRARY, backend, fallback=FALLBACK)


def power_difference(x: Any, y: Any, pow: Any, *, backend: str | None = None, name: str | None = None) -> tf.Tensor:
    """(x - y) ** pow with NumPy broadcasting of x and y; ``pow`` a scalar of x's dtype."""
    x = tf.convert_to_tensor(x)
    if x.dtype not in DTYPES:
        raise TypeError(f"{OP_NAME} supports {', '.join(d.name for d in DTYPES)}; x has dtype {x.dtype.name}")
    y = tf.convert_to_tensor(y, dtype=x.dtype)
    p = tf.convert_to_tensor(pow, dtype=x.dtype)
    if resolve_backend(backend) == "cpp":
        return load_library().power_difference(x, y, p, name=name)
    with tf.name_scope(name or "PowerDifferenceFallback"):
        _check_pow_is_scalar(x, y, p)
        return _fallback(x, y, p)


def _check_pow_is_scalar(x: tf.Tensor, y: tf.Tensor, p: tf.Tensor) -> None:
    """The C++ op's scalar check: InvalidArgumentError eagerly, ValueError while tracing (like its shape function)."""
    rank = p.shape.rank
    if rank is None:  # only possible in a graph: check when it runs
        tf.debugging.assert_rank(p, 0, message=f"{OP_NAME}: pow must be a scalar")
        return
    if rank != 0:
        message = (f"{OP_NAME}: pow must be a scalar, got shape {p.shape.as_list()} "
                   f"(x has shape {x.shape.as_list()}, y has shape {y.shape.as_list()})")
        if tf.executing_eagerly():
            raise tf.errors.InvalidArgumentError(None, None, message)
        raise ValueError(message)


@tf.custom_gradient
def _fallback(x: tf.Tensor, y: tf.Tensor, p: tf.Tensor) -> Any:
    """Pure TensorFlow: tf.pow(x - y, p), differentiated by the same function as the C++ op."""
    z = tf.pow(x - y, p)

    def grad(dz: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        return gradients(x, y, p, z, dz)

    return z, grad


def gradients(x: tf.Tensor, y: tf.Tensor, p: tf.Tensor, z: tf.Tensor,
              dz: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Gradients of z = (x - y) ** p w.r.t. x, y and p, given the upstream gradient dz."""
    d = x - y
    zero = tf.zeros_like(d)
    local = tf.where(tf.equal(p, 0), zero, p * tf.pow(d, p - 1))  # dz/dx, elementwise
    gd = tf.math.multiply_no_nan(local, dz)
    # Broadcasting repeated x (or y) along some dimensions: sum the gradient back over them.
    rx, ry = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(x), s1=tf.shape(y))
    gx = tf.reshape(tf.reduce_sum(gd, rx), tf.shape(x))
    gy = tf.reshape(tf.reduce_sum(-gd, ry), tf.shape(y))
    positive = d > 0
    log_d = tf.where(positive, tf.math.log(tf.where(positive, d, tf.ones_like(d))), zero)
    gp = tf.reshape(tf.reduce_sum(tf.math.multiply_no_nan(z * log_d, dz)), tf.shape(p))
    return gx, gy, gp


@tf.RegisterGradient(OP_NAME)
def _power_difference_grad(op: tf.Operation, grad: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Returns grad * (pow * (x-y)^(pow-1), -pow * (x-y)^(pow-1), (x-y)^pow * log(x-y)), reduced over broadcasting."""
    x, y, p = op.inputs
    return gradients(x, y, p, op.outputs[0], grad)
