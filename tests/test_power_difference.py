"""PowerDifference forward parity with NumPy, errors, shapes and gradients, on both backends.

Every test that takes the ``backend`` fixture runs twice: against the C++ op (built from
custom_ops/ on first use, once per session thanks to the cache) and against the pure-TF
fallback, forced with ``backend="fallback"``.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from tfbench.operators import backend as backend_rule
from tfbench.operators import power_difference as pd
from tfbench.operators.power_difference import power_difference
from tfbench.plumbing.errors import UserError


@pytest.fixture(scope="module", params=["cpp", "fallback"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "cpp":
        pd.load_library()  # builds (cached) once; a build failure fails the cpp tests loudly
    return request.param


def numpy_reference(x: np.ndarray, y: np.ndarray, p: float) -> np.ndarray:
    d = np.asarray(x - y)
    with np.errstate(all="ignore"):
        # an exponent array, at least 1-D: for a scalar 0.5 NumPy takes a sqrt shortcut
        flat = d.reshape(-1)
        return np.power(flat, np.full(flat.shape, p, dtype=d.dtype)).reshape(d.shape)


SHAPE_PAIRS = [
    ((), ()),
    ((5,), ()),
    ((), (5,)),
    ((2, 3), (3,)),
    ((3,), (2, 3)),
    ((4, 1, 3), (5, 1)),  # broadcasting in both directions
    ((2, 1, 4, 1, 3), (1, 5, 1, 2, 1)),
    ((0, 3), (3,)),
    ((1, 1), (1,)),
]


@pytest.mark.parametrize("x_shape,y_shape", SHAPE_PAIRS)
def test_forward_matches_numpy_with_broadcasting(backend: str, x_shape: tuple, y_shape: tuple) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 3, size=x_shape).astype(np.float32)
    y = rng.uniform(-1, 0.4, size=y_shape).astype(np.float32)
    z = power_difference(x, y, 2.5, backend=backend).numpy()
    np.testing.assert_allclose(z, numpy_reference(x, y, np.float32(2.5)), rtol=1e-6)
    assert z.shape == np.broadcast_shapes(x_shape, y_shape)


@pytest.mark.parametrize("dtype,rtol", [(np.float16, 2e-3), (ml_dtypes.bfloat16, 1.6e-2),
                                        (np.float32, 1e-6), (np.float64, 1e-13)])
def test_every_dtype(backend: str, dtype: type, rtol: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, size=(3, 4)).astype(dtype)
    y = rng.uniform(-2, 2, size=(4,)).astype(dtype)
    for p in (2.0, 3.0, -1.0):
        z = power_difference(x, y, p, backend=backend)
        assert z.dtype.as_numpy_dtype == dtype
        want = numpy_reference(x, y, dtype(p)).astype(np.float64)
        np.testing.assert_allclose(z.numpy().astype(np.float64), want, rtol=rtol, atol=1e-30)


def test_ieee_special_cases(backend: str) -> None:
    x = np.array([-2.0, 0.0, 0.0, np.nan, 4.0, -np.inf, 2.0, 1.0], np.float32)
    cases = {0.5: None, -1.0: None, 0.0: None, np.nan: None, np.inf: None}
    for p in cases:
        got = power_difference(x, np.float32(0.0), p, backend=backend).numpy()
        want = numpy_reference(x, np.float32(0.0), np.float32(p))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-6)
    # the ones people ask about, spelled out
    got = power_difference(np.array([-8.0, 0.0, np.nan], np.float32), 0.0, np.float32(0.0), backend=backend).numpy()
    np.testing.assert_array_equal(got, [1.0, 1.0, 1.0])  # x ** 0 == 1, even for NaN (IEEE 754 pow)
    assert np.isnan(power_difference(np.float32(-8.0), 0.0, 1 / 3, backend=backend).numpy())
    assert power_difference(np.float32(0.0), 0.0, -1.0, backend=backend).numpy() == np.inf


def test_incompatible_shapes_raise_invalid_argument_with_shapes(backend: str) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        power_difference(np.ones((2, 3), np.float32), np.ones((4,), np.float32), 2.0, backend=backend)
    assert "[2,3]" in err.value.message and "[4]" in err.value.message


@pytest.mark.parametrize("pow_shape", [(2,), (1,), (2, 2)])
def test_non_scalar_pow_raises_invalid_argument(backend: str, pow_shape: tuple) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match="pow must be a scalar"):
        power_difference(np.ones((3,), np.float32), np.zeros((3,), np.float32), np.full(pow_shape, 2.0, np.float32),
                         backend=backend)


def test_static_shape_errors_while_tracing(backend: str) -> None:
    """In a graph with known shapes the errors come at trace time as ValueError, like tf.pow's."""
    f = tf.function(lambda x, y, p: power_difference(x, y, p, backend=backend))
    with pytest.raises(ValueError):
        f.get_concrete_function(tf.TensorSpec([2, 3]), tf.TensorSpec([4]), tf.TensorSpec([]))
    with pytest.raises(ValueError, match="rank 0|scalar"):
        f.get_concrete_function(tf.TensorSpec([3]), tf.TensorSpec([3]), tf.TensorSpec([2]))


def test_shape_inference_and_runtime_checks_with_unknown_shapes(backend: str) -> None:
    f = tf.function(lambda x, y, p: power_difference(x, y, p, backend=backend))
    concrete = f.get_concrete_function(tf.TensorSpec([None, 1, 3]), tf.TensorSpec([5, 1]), tf.TensorSpec([]))
    assert concrete.output_shapes.as_list() == [None, 5, 3]  # the broadcast, not pow's shape (the lab's bug)
    dynamic = f.get_concrete_function(tf.TensorSpec(None), tf.TensorSpec(None), tf.TensorSpec(None))
    x, y = np.full((2, 1), 3.0, np.float32), np.ones((1, 4), np.float32)
    np.testing.assert_allclose(dynamic(tf.constant(x), tf.constant(y), tf.constant(2.0)), np.full((2, 4), 4.0))
    with pytest.raises(tf.errors.InvalidArgumentError):
        dynamic(tf.constant(x), tf.ones((3, 5)), tf.constant(2.0))  # 2 vs 3: not broadcastable
    with pytest.raises(tf.errors.InvalidArgumentError, match="scalar"):
        dynamic(tf.constant(x), tf.constant(y), tf.ones((2,)))


def test_unsupported_dtype_is_a_type_error(backend: str) -> None:
    with pytest.raises(TypeError, match="int32"):
        power_difference(np.ones(3, np.int32), np.ones(3, np.int32), 2, backend=backend)


def _pd(backend: str):
    return lambda x, y, p: power_difference(x, y, p, backend=backend)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("x_shape,y_shape", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((), (3,))])
def test_gradients_match_numeric_float64(backend: str, graph: bool, x_shape: tuple, y_shape: tuple) -> None:
    rng = np.random.default_rng(2)
    x = tf.constant(rng.uniform(2.0, 3.0, size=x_shape))  # x - y > 0: every partial is defined
    y = tf.constant(rng.uniform(-0.5, 1.0, size=y_shape))
    p = tf.constant(2.7, tf.float64)
    fn = tf.function(_pd(backend)) if graph else _pd(backend)
    theoretical, numerical = tf.test.compute_gradient(fn, [x, y, p], delta=1e-4)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6)
    # the reductions over broadcast dimensions give each input a gradient of its own shape
    with tf.GradientTape() as tape:
        tape.watch([x, y, p])
        z = fn(x, y, p)
    gx, gy, gp = tape.gradient(z, [x, y, p])
    assert gx.shape == x.shape and gy.shape == y.shape and gp.shape == ()


def test_gradient_policy_where_x_minus_y_is_not_positive(backend: str) -> None:
    x = tf.constant([-2.0, 0.0, 3.0], tf.float64)
    y = tf.constant(0.0, tf.float64)
    for p_value, want_dx in ((3.0, [12.0, 0.0, 27.0]), (0.0, [0.0, 0.0, 0.0])):
        p = tf.constant(p_value, tf.float64)
        with tf.GradientTape() as tape:
            tape.watch([x, p])
            z = power_difference(x, y, p, backend=backend)
        gx, gp = tape.gradient(z, [x, p])
        np.testing.assert_allclose(gx, want_dx)  # pow == 0: z is the constant 1, so 0 (not 0 * inf)
        # d/dpow sums z * log(x - y) over x - y > 0 only
        np.testing.assert_allclose(gp, 27.0 * np.log(3.0) if p_value == 3.0 else np.log(3.0))


def test_tf_gradients_in_a_graph_uses_the_registered_gradient(backend: str) -> None:
    @tf.function
    def grads(x: tf.Tensor, y: tf.Tensor) -> list:
        return tf.gradients(power_difference(x, y, 2.0, backend=backend), [x, y])

    x, y = tf.constant([[3.0, 4.0], [5.0, 6.0]]), tf.constant([1.0, 2.0])
    gx, gy = grads(x, y)
    np.testing.assert_allclose(gx, 2 * (x - y))
    np.testing.assert_allclose(gy, -np.sum(2 * (x - y), axis=0))


def test_cpp_and_fallback_agree_on_values_and_gradients() -> None:
    rng = np.random.default_rng(3)
    x, y = tf.constant(rng.uniform(-2, 3, size=(4, 1, 5))), tf.constant(rng.uniform(-1, 1, size=(3, 1)))
    p = tf.constant(3.0, tf.float64)
    results = {}
    for backend in ("cpp", "fallback"):
        with tf.GradientTape() as tape:
            tape.watch([x, y, p])
            z = power_difference(x, y, p, backend=backend)
        results[backend] = [z, *tape.gradient(z, [x, y, p])]
    for a, b in zip(results["cpp"], results["fallback"]):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_the_cpp_backend_puts_a_powerdifference_node_in_the_graph() -> None:
    f = tf.function(lambda x: power_difference(x, 1.0, 2.0, backend="cpp"))
    ops = {op.type for op in f.get_concrete_function(tf.TensorSpec([3])).graph.get_operations()}
    assert "PowerDifference" in ops
    g = tf.function(lambda x: power_difference(x, 1.0, 2.0, backend="fallback"))
    ops = {op.type for op in g.get_concrete_function(tf.TensorSpec([3])).graph.get_operations()}
    assert "PowerDifference" not in ops and "Pow" in ops


def test_the_environment_variable_forces_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend_rule.ENV_BACKEND, "fallback")
    assert pd.resolve_backend() == "fallback"
    f = tf.function(lambda x: power_difference(x, 1.0, 2.0))
    ops = {op.type for op in f.get_concrete_function(tf.TensorSpec([3])).graph.get_operations()}
    assert "PowerDifference" not in ops
    monkeypatch.setenv(backend_rule.ENV_BACKEND, "cpp")
    assert pd.resolve_backend() == "cpp"
    monkeypatch.setenv(backend_rule.ENV_BACKEND, "gpu")
    with pytest.raises(UserError, match="TFBENCH_OPS_BACKEND"):
        pd.resolve_backend()
