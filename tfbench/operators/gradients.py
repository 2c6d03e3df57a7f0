"""Gradients registered from Python, three ways (exercise 5.5): ``tf.custom_gradient`` (a stable softplus,
straight-through quantisation, gradient clipping), ``tf.RegisterGradient`` with a gradient override map
(guided ReLU, a counting Sin), each checked against numeric differentiation, and :func:`which`, the
lookup of where an op's gradient is registered.  ``python -m tfbench.grads`` runs them.
"""

from __future__ import annotations

import collections
import difflib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tensorflow as tf  # noqa: E402  (the gradient registrations below need it at import)

from tfbench.plumbing.errors import UserError


@tf.custom_gradient
def phi(v: tf.Tensor) -> Any:
    """phi(v) = v / sqrt(1 + v^2), with its analytic derivative 1 / (1 + v^2)^(3/2) (exercise 2.7)."""
    s = 1.0 + tf.square(v)
    y = v * tf.math.rsqrt(s)

    def grad(dy: tf.Tensor) -> tf.Tensor:
        return dy * tf.pow(s, -1.5)

    return y, grad


@tf.custom_gradient
def softplus(x: tf.Tensor) -> Any:
    """log(1 + e^x) computed as max(x, 0) + log1p(e^-|x|); gradient sigmoid(x), finite for any x."""
    y = tf.maximum(x, 0.0) + tf.math.log1p(tf.exp(-tf.abs(x)))

    def grad(dy: tf.Tensor) -> tf.Tensor:
        return dy * tf.sigmoid(x)

    return y, grad


def naive_softplus(x: tf.Tensor) -> tf.Tensor:
    """log(1 + e^x) as written: e^x overflows for large x, and so does its automatic gradient."""
    return tf.math.log(1.0 + tf.exp(x))


def quantize_ste(x: tf.Tensor, bits: int = 8, lo: float = 0.0, hi: float = 1.0) -> tf.Tensor:
    """Round x to 2^bits levels in [lo, hi]; backward: straight-through inside [lo, hi], 0 outside.

    The true gradient of rounding is 0 almost everywhere, which would stop training; the
    straight-through estimator pretends the rounding is the identity.  Same forward and
    backward as ``tf.quantization.fake_quant_with_min_max_args`` when 0 is on the grid.
    """
    scale = (hi - lo) / (2**bits - 1)

    @tf.custom_gradient
    def _quantize(v: tf.Tensor) -> Any:
        q = tf.floor((tf.clip_by_value(v, lo, hi) - lo) / scale + 0.5) * scale + lo

        def grad(dy: tf.Tensor) -> tf.Tensor:
            return tf.where((v >= lo) & (v <= hi), dy, tf.zeros_like(dy))

        return q, grad

    return _quantize(x)


@tf.custom_gradient
def round_ste(x: tf.Tensor) -> Any:
    """tf.round forward, identity backward: the plain straight-through estimator."""
    return tf.round(x), lambda dy: dy


def clip_gradient_norm(x: tf.Tensor, clip_norm: float) -> tf.Tensor:
    """Identity forward; backward rescales the incoming gradient to norm at most ``clip_norm``."""

    @tf.custom_gradient
    def _clip(v: tf.Tensor) -> Any:
        return tf.identity(v), lambda dy: tf.clip_by_norm(dy, clip_norm)

    return _clip(x)


GUIDED_RELU = "TfbenchGuidedRelu"


COUNTED_SIN = "TfbenchCountedSin"


OVERRIDE_CALLS: collections.Counter = collections.Counter()


"""How often each override gradient function was called (it runs while a graph is differentiated)."""


@tf.RegisterGradient(GUIDED_RELU)
def _guided_relu_grad(op: tf.Operation, grad: tf.Tensor) -> tf.Tensor:
    """Returns grad where grad > 0 and relu(x) > 0, else 0 (guided backpropagation)."""
    OVERRIDE_CALLS[GUIDED_RELU] += 1
    keep = (grad > 0) & (op.outputs[0] > 0)
    return tf.where(keep, grad, tf.zeros_like(grad))


@tf.RegisterGradient(COUNTED_SIN)
def _counted_sin_grad(op: tf.Operation, grad: tf.Tensor) -> tf.Tensor:
    """Returns grad * cos(x), like TensorFlow's _SinGrad, and counts that it was used."""
    OVERRIDE_CALLS[COUNTED_SIN] += 1
    return grad * tf.cos(op.inputs[0])


def gradient_with_override(fn: Callable[[tf.Tensor], tf.Tensor], x: Any, overrides: dict[str, str], *,
                           method: str = "gradients", upstream: Any = None) -> tf.Tensor:
    """d fn(x) / dx inside a tf.function whose ops are built under ``gradient_override_map(overrides)``.

    ``method="gradients"`` uses ``tf.gradients`` (honours the map); ``"tape"`` uses
    ``tf.GradientTape`` (ignores it).  ``upstream`` is the output gradient (default ones).
    """
    if method not in ("gradients", "tape"):
        raise UserError(f"method must be 'gradients' or 'tape', got {method!r}")
    x = tf.convert_to_tensor(x)
    upstream = tf.ones_like(x) if upstream is None else tf.convert_to_tensor(upstream, dtype=x.dtype)

    @tf.function
    def run(x: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
        graph = tf.compat.v1.get_default_graph()
        if method == "gradients":
            with graph.gradient_override_map(overrides):
                y = fn(x)
            return tf.gradients(y, x, grad_ys=upstream)[0]
        with tf.GradientTape() as tape:
            tape.watch(x)
            with graph.gradient_override_map(overrides):
                y = fn(x)
        return tape.gradient(y, x, output_gradients=upstream)

    return run(x, upstream)


@dataclass
class Check:
    """One mechanism's gradient compared with a reference: max |difference|."""

    mechanism: str
    reference: str
    max_error: float


def _jacobian_error(fn: Callable[[tf.Tensor], tf.Tensor], x: np.ndarray) -> float:
    """Max |analytic - numeric| Jacobian entry of fn at x (float64 central differences)."""
    theoretical, numerical = tf.test.compute_gradient(fn, [tf.constant(x, tf.float64)])
    return float(np.max(np.abs(theoretical[0] - numerical[0])))


def check_all(seed: int = 0) -> list[Check]:
    """Run every mechanism's gradient against its reference; small errors mean it is right."""
    rng = np.random.default_rng(seed)
    v = rng.uniform(-3, 3, size=(6,))
    checks = [
        Check("custom_gradient phi, eager", "tf.test.compute_gradient", _jacobian_error(phi, v)),
        Check("custom_gradient phi, tf.function", "tf.test.compute_gradient", _jacobian_error(tf.function(phi), v)),
        Check("custom_gradient softplus", "tf.test.compute_gradient", _jacobian_error(softplus, v)),
    ]
    big = tf.constant([-1000.0, -50.0, 0.0, 50.0, 1000.0], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(big)
        y = softplus(big)
    checks.append(Check("custom_gradient softplus at +-1000", "tf.nn.softplus and tf.sigmoid",
                        max(float(np.max(np.abs(y - tf.nn.softplus(big)))),
                            float(np.max(np.abs(tape.gradient(y, big) - tf.sigmoid(big)))))))
    q = tf.constant(rng.uniform(-0.2, 1.2, size=(8,)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(q)
        ours = quantize_ste(q)
        ref = tf.quantization.fake_quant_with_min_max_args(q, min=0.0, max=1.0, num_bits=8)
    checks.append(Check("custom_gradient quantize STE", "tf.quantization.fake_quant_with_min_max_args",
                        max(float(np.max(np.abs(ours - ref))),
                            float(np.max(np.abs(tape.gradient(ours, q) - tape.gradient(ref, q)))))))
    g = tf.constant(rng.normal(size=(5,)) * 10, tf.float32)
    x5 = q[:5]
    with tf.GradientTape() as tape:
        tape.watch(x5)
        out = tf.reduce_sum(clip_gradient_norm(x5, 1.0) * g)
    clipped = tape.gradient(out, x5)
    checks.append(Check("custom_gradient clip by norm", "g * min(1, 1/|g|) in NumPy",
                        float(np.max(np.abs(clipped - g.numpy() * min(1.0, 1.0 / np.linalg.norm(g.numpy())))))))
    s = rng.uniform(-3, 3, size=(6,))
    got = gradient_with_override(tf.sin, s, {"Sin": COUNTED_SIN}, method="gradients")
    numeric = np.diag(tf.test.compute_gradient(tf.sin, [tf.constant(s)])[1][0])
    checks.append(Check("RegisterGradient + override map (tf.gradients)", "numeric d sin / dx",
                        float(np.max(np.abs(got.numpy() - numeric)))))
    r = rng.normal(size=(8,))
    up = rng.normal(size=(8,))
    guided = gradient_with_override(tf.nn.relu, r, {"Relu": GUIDED_RELU}, method="gradients", upstream=up)
    checks.append(Check("guided ReLU via tf.gradients", "up * (up > 0) * (x > 0) in NumPy",
                        float(np.max(np.abs(guided.numpy() - up * (up > 0) * (r > 0))))))
    taped = gradient_with_override(tf.nn.relu, r, {"Relu": GUIDED_RELU}, method="tape", upstream=up)
    checks.append(Check("guided ReLU via GradientTape (map ignored)", "plain ReLU gradient up * (x > 0)",
                        float(np.max(np.abs(taped.numpy() - up * (r > 0))))))
    from tfbench.operators.power_difference import power_difference, resolve_backend

    x, yv = rng.uniform(1, 3, size=(3, 4)), rng.uniform(-1, 0.5, size=(4,))
    for backend in sorted({resolve_backend("auto"), "fallback"}):  # the C++ op when it can be built
        def pd(a: tf.Tensor, b: tf.Tensor, p: tf.Tensor, backend: str = backend) -> tf.Tensor:
            return power_difference(a, b, p, backend=backend)

        theoretical, numerical = tf.test.compute_gradient(
            pd, [tf.constant(x), tf.constant(yv), tf.constant(2.5, tf.float64)])
        checks.append(Check(f"RegisterGradient PowerDifference ({backend})", "tf.test.compute_gradient",
                            max(float(np.max(np.abs(t - n))) for t, n in zip(theoretical, numerical))))
    return checks


@dataclass
class GradientInfo:
    """Where the gradient of one op type is registered."""

    op_type: str
    function: str | None  # module.qualname, None if registered as not differentiable
    file: str | None
    line: int | None
    doc: str | None
    source: str | None


def _registry() -> Any:
    # ops._gradient_registry is the registry tf.RegisterGradient writes to (private, stable since TF 1.0).
    from tensorflow.python.framework import ops

    import tfbench.operators.power_difference  # noqa: F401  (registers PowerDifference's gradient; builds nothing)

    return ops._gradient_registry


def which(op_type: str) -> GradientInfo:
    """Look up the gradient function registered for ``op_type`` (e.g. "Sin", "MaxPool")."""
    registry = _registry()
    try:
        fn = registry.lookup(op_type)
    except LookupError:
        close = difflib.get_close_matches(op_type, registry.list(), n=3)
        hint = (f"; did you mean {', '.join(close)}?" if close
                else " (op types are spelled as in tf.raw_ops, e.g. MatMul)")
        raise UserError(f"no gradient is registered for op type {op_type!r}{hint}") from None
    if fn is None:  # ops.NotDifferentiable / tf.no_gradient
        return GradientInfo(op_type, None, None, None, "registered as not differentiable (tf.no_gradient)", None)
    lines, start = inspect.getsourcelines(fn)
    return GradientInfo(op_type, f"{fn.__module__}.{fn.__qualname__}", inspect.getsourcefile(fn), start,
                        inspect.getdoc(fn), "".join(lines))


def format_info(info: GradientInfo, source: bool = False) -> str:
    """The `which` output block for one op type."""
    if info.function is None:
        return f"{info.op_type}: {info.doc}"
    text = f"{info.op_type}: {info.function}\n  {info.file}:{info.line}\n  {info.doc or '(no docstring)'}"
    if source and info.source:
        text += "\n" + "".join(f"    {line}" for line in info.source.splitlines(keepends=True))
    return text
