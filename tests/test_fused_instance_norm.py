"""The fused InstanceNorm op against TensorFlow's composite and tf.test.compute_gradient; its errors on both
backends; PowerDifference's plane-broadcast fast path against its general path and tf.pow(x - y, 2)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfbench.benchmarks import norms as norm_bench
from tfbench.operators import fused_instance_norm as fin
from tfbench.operators import power_difference as pd
from tfbench.plumbing.errors import UserError

# the transform net's shapes at batch 2 and 64x64 photos (width 16), and odd ones: channels that are not a
# multiple of the 16-channel block, one pixel in a row, one channel
SHAPES = [(2, 64, 64, 16), (2, 32, 32, 32), (1, 16, 16, 64), (3, 5, 7, 20), (2, 1, 9, 3), (1, 4, 4, 1)]


@pytest.fixture(scope="module")
def library() -> object:
    return fin.load_library()  # builds (cached) once; a build failure fails these tests loudly


def _inputs(shape: tuple[int, ...], seed: int = 0, dtype: type = np.float32) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=shape).astype(dtype)  # a mean away from 0, as after a convolution
    gamma = rng.normal(1.0, 0.2, size=shape[-1]).astype(dtype)
    beta = rng.normal(0.0, 0.2, size=shape[-1]).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    return x, gamma, beta, dy


def _forward_backward(fn: object, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                      dy: np.ndarray) -> list[np.ndarray]:
    xs = [tf.constant(x), tf.constant(gamma), tf.constant(beta)]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        y = fn(*xs)
    return [y.numpy(), *[g.numpy() for g in tape.gradient(y, xs, output_gradients=tf.constant(dy))]]


@pytest.mark.parametrize("variance", fin.VARIANCES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_outputs_and_gradients_equal_the_composite(library: object, shape: tuple[int, ...], variance: str) -> None:
    x, gamma, beta, dy = _inputs(shape)
    fused = _forward_backward(lambda *a: fin.instance_norm(*a, variance=variance, backend="cpp"), x, gamma, beta, dy)
    composite = _forward_backward(fin.composite, x, gamma, beta, dy)
    for name, got, want in zip(("y", "dx", "dgamma", "dbeta"), fused, composite):
        # dgamma and dbeta sum over batch x pixels values: 1e-5 of the largest, as float32 sums go
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())),
                                   err_msg=f"{name} {shape} {variance}")


def test_gradients_match_numerical_differentiation(library: object) -> None:
    x, gamma, beta, _ = _inputs((2, 3, 4, 5), seed=1, dtype=np.float64)
    for variance in fin.VARIANCES:
        theoretical, numerical = tf.test.compute_gradient(
            lambda a, g, b, v=variance: fin.instance_norm(a, g, b, variance=v, backend="cpp"), [x, gamma, beta])
        for t, n in zip(theoretical, numerical):
            np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-7)


def test_the_statistics_outputs_and_their_gradients(library: object) -> None:
    """The raw op's mean and inv_std, and gradients that flow through them too, against the composite's."""
    x, gamma, beta, _ = _inputs((2, 4, 3, 18), seed=2, dtype=np.float64)
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        y, mean, inv_std = library.instance_norm(xt, gamma, beta, epsilon=1e-3)
        loss = tf.reduce_sum(y * y) + 3.0 * tf.reduce_sum(mean) + tf.reduce_sum(inv_std ** 2)
        m = tf.reduce_mean(xt, axis=[1, 2])
        inv = tf.math.rsqrt(tf.math.reduce_variance(xt, axis=[1, 2]) + 1e-3)
        ref = fin.composite(xt, gamma, beta, 1e-3)
        ref_loss = tf.reduce_sum(ref * ref) + 3.0 * tf.reduce_sum(m) + tf.reduce_sum(inv ** 2)
    np.testing.assert_allclose(mean, m, rtol=1e-12)
    np.testing.assert_allclose(inv_std, inv, rtol=1e-10)
    np.testing.assert_allclose(tape.gradient(loss, xt), tape.gradient(ref_loss, xt), rtol=1e-9, atol=1e-9)


def test_the_welford_and_two_pass_statistics_agree_on_a_large_offset(library: object) -> None:
    """A mean 1000 standard deviations from 0: sums in double keep both accurate."""
    x, gamma, beta, _ = _inputs((1, 64, 64, 16), seed=3)
    x = (x - 3.0) * 0.01 + 10.0
    reference = fin.composite(x.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64)).numpy()
    for variance in fin.VARIANCES:
        got = fin.instance_norm(x, gamma, beta, variance=variance, backend="cpp").numpy()
        np.testing.assert_allclose(got, reference, atol=2e-4)  # float32 x itself is rounded to 1e-6 of 10


@pytest.mark.parametrize("backend", ["cpp", "fallback"])
def test_bad_shapes_and_attributes_are_invalid_argument_errors_naming_them(library: object, backend: str) -> None:
    x = np.ones((2, 4, 4, 3), np.float32)
    cases = [(np.ones((4, 4, 3), np.float32), [1.0] * 3, [0.0] * 3, 1e-3,
              r"x must be 4-D \[batch, height, width, channels\] \(NHWC\), got shape \[4,\s?4,\s?3\]"),
             (x, [1.0] * 4, [0.0] * 3, 1e-3, r"gamma must have shape \[3\] \(x's channels.*got \[4\]"),
             (x, [1.0] * 3, [[0.0] * 3], 1e-3, r"beta must have shape \[3\].*got \[1,\s?3\]"),
             (x, [1.0] * 3, [0.0] * 3, 0.0, r"epsilon must be positive and finite, got 0"),
             (x, [1.0] * 3, [0.0] * 3, -1.0, r"epsilon must be positive and finite, got -1"),
             (np.ones((2, 0, 4, 3), np.float32), [1.0] * 3, [0.0] * 3, 1e-3,
              r"x has no pixels to normalise over \(height x width = 0\), shape \[2,\s?0,\s?4,\s?3\]")]
    for xv, gamma, beta, epsilon, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match="InstanceNorm: " + message):
            fin.instance_norm(xv, gamma, beta, epsilon=epsilon, backend=backend)
    with pytest.raises(TypeError, match="x has dtype int32"):
        fin.instance_norm(np.ones((1, 2, 2, 1), np.int32), [1], [0], backend=backend)
    with pytest.raises(ValueError, match="variance must be one of welford, two_pass"):
        fin.instance_norm(x, [1.0] * 3, [0.0] * 3, variance="three_pass", backend=backend)
    # while tracing, the shape function (cpp) or the same check (fallback) refuses it before anything runs
    fn = tf.function(lambda v: fin.instance_norm(v, [1.0] * 4, [0.0] * 4, backend=backend))
    with pytest.raises(ValueError, match="gamma must have shape \\[3\\]"):
        fn.get_concrete_function(tf.TensorSpec([None, None, None, 3]))
    assert fin.instance_norm(np.ones((0, 4, 4, 3), np.float32), [1.0] * 3, [0.0] * 3, backend=backend).shape == (
        0, 4, 4, 3)


def test_the_grad_op_checks_its_inputs(library: object) -> None:
    x = np.ones((2, 4, 4, 3), np.float32)
    stats = np.ones((2, 3), np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="InstanceNormGrad: mean must have shape "
                                                             r"\[2,3\] .*got \[3,2\]"):
        library.instance_norm_grad(x, x, [1.0] * 3, stats.T, stats, stats, stats)
    with pytest.raises(tf.errors.InvalidArgumentError, match="InstanceNormGrad: dinv_std must have shape"):
        library.instance_norm_grad(x, x, [1.0] * 3, stats, stats, stats, stats[:1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="InstanceNormGrad: gamma must have shape \\[3\\]"):
        library.instance_norm_grad(x, x, [1.0] * 2, stats, stats, stats, stats)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_power_difference_fast_path_equals_its_general_path_and_tf_pow(dtype: type) -> None:
    pd.load_library()
    rng = np.random.default_rng(4)
    for shape in [(2, 16, 16, 32), (1, 8, 8, 5), (3, 1, 7, 16)]:  # batch 1 collapses to [pixels, channels]
        x = tf.constant(rng.normal(3.0, 2.0, size=shape).astype(dtype))
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)  # a per-channel value against each plane
        full = tf.broadcast_to(mean, x.shape)  # the same values without broadcasting: the general path
        for p in (2.0, 2.5):
            for a, b in ((x, mean), (mean, x)):  # the plane as x, and as y
                fast = pd.power_difference(a, b, p, backend="cpp").numpy()
                general = pd.power_difference(a if a is x else full, b if b is x else full, p, backend="cpp").numpy()
                label = f"{shape} p={p} {dtype.__name__}"
                if p != 2.0:  # the same pow call per element
                    np.testing.assert_array_equal(fast, general, err_msg=label)
                    continue
                # the square as one multiplication: exactly NumPy's (x - y) * (x - y), the correctly rounded
                # square; C's powf(d, 2) (the general path) and tf.pow may differ from it in the last bit
                d = (a.numpy() - b.numpy()).astype(dtype)
                np.testing.assert_array_equal(fast, d * d, err_msg=label)
                rtol = 2 * np.finfo(dtype).eps
                np.testing.assert_allclose(fast, general, rtol=rtol, atol=0, err_msg=label)
                np.testing.assert_allclose(fast, tf.pow(a - b, 2.0).numpy(), rtol=rtol, atol=0, err_msg=label)


def test_the_norm_benchmark_weights_the_shapes_by_the_nets_norms() -> None:
    """The ratios from rows (``bench style`` runs the timing itself: tests/test_style.py)."""
    plan = norm_bench.shapes(4, 128)
    assert plan == [((4, 128, 128, 16), 2), ((4, 64, 64, 32), 2), ((4, 32, 32, 64), 7)]
    times = {"composite": 3.0, "fused two_pass": 1.0, "fused welford": 2.0}
    rows = [{"case": f"instance norm {impl} {mode}", "shape": "x".join(map(str, shape)), "median_ms": ms * count,
             "p10_ms": ms} for shape, count in plan for impl, ms in times.items()
            for mode in ("forward", "forward+backward")]
    rows += [{"case": case, "shape": "x".join(map(str, shape)), "median_ms": ms, "p10_ms": ms}
             for shape, _ in plan for case, ms in (("tf.pow(x - mean, 2)", 1.0), ("PowerDifference (x - mean)^2", 2.0))]
    ratios = norm_bench._ratios(rows, plan, "median_ms")
    assert ratios["composite / fused two_pass, forward, 4x32x32x64"] == pytest.approx(3.0)
    assert ratios["composite / fused welford, forward+backward, the net's norms"] == pytest.approx(1.5)
    assert ratios["tf.pow / PowerDifference, 4x64x64x32"] == pytest.approx(0.5)
    goals = norm_bench.goals(ratios)
    assert [goal["met"] for goal in goals.values()] == [True, False]
    with pytest.raises(UserError, match="--image-size must be a multiple of 4"):
        norm_bench.run_benchmark(["--image-size", "30"])
