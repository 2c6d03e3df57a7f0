"""Gradient mechanisms registered from Python, each against a real reference, and `which`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfbench.operators import gradients
from tfbench.plumbing.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent


def _max_jacobian_error(fn, x: np.ndarray) -> float:
    theoretical, numerical = tf.test.compute_gradient(fn, [tf.constant(x, tf.float64)])
    return float(np.max(np.abs(theoretical[0] - numerical[0])))


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_phi_value_and_analytic_derivative(graph: bool) -> None:
    v = np.linspace(-4, 4, 9)
    fn = tf.function(gradients.phi) if graph else gradients.phi
    np.testing.assert_allclose(fn(tf.constant(v)), v / np.sqrt(1 + v**2), rtol=1e-12)
    assert _max_jacobian_error(fn, v) < 1e-6
    x = tf.constant(v)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    np.testing.assert_allclose(tape.gradient(y, x), (1 + v**2) ** -1.5, rtol=1e-12)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_softplus_is_right_and_stays_finite_where_the_naive_one_breaks(graph: bool) -> None:
    fn = tf.function(gradients.softplus) if graph else gradients.softplus
    assert _max_jacobian_error(fn, np.linspace(-5, 5, 11)) < 1e-6
    x = tf.constant([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, naive = fn(x), gradients.naive_softplus(x)
    np.testing.assert_allclose(ours, tf.nn.softplus(x), rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(ours, x), tf.sigmoid(x), rtol=1e-6)
    assert np.isinf(naive[-1]) and np.isnan(tape.gradient(naive, x)[-1])  # why the custom gradient exists


def test_quantize_ste_matches_fake_quant_forward_and_backward() -> None:
    x = tf.constant(np.random.default_rng(0).uniform(-0.3, 1.3, size=200), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = gradients.quantize_ste(x, bits=8)
        reference = tf.quantization.fake_quant_with_min_max_args(x, min=0.0, max=1.0, num_bits=8)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    np.testing.assert_array_equal(tape.gradient(ours, x), tape.gradient(reference, x))
    assert 0 < float(tf.reduce_sum(tape.gradient(ours, x))) < 200  # passes inside [0, 1], blocks outside


def test_round_ste_reports_identity_while_the_true_derivative_is_zero() -> None:
    x = np.array([0.2, 1.3, -2.4])  # away from the .5 jumps
    theoretical, numerical = tf.test.compute_gradient(gradients.round_ste, [tf.constant(x)])
    np.testing.assert_allclose(theoretical[0], np.eye(3))  # what the estimator pretends
    np.testing.assert_allclose(numerical[0], np.zeros((3, 3)))  # what rounding really does


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_gradient_clipping_by_norm_inside_the_backward_pass(graph: bool) -> None:
    x = tf.constant([1.0, 2.0, 3.0])

    def loss(x: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(gradients.clip_gradient_norm(x, 1.0) * g)

    loss_fn = tf.function(loss) if graph else loss
    for g, want in ((tf.constant([3.0, 4.0, 0.0]), [0.6, 0.8, 0.0]), (tf.constant([0.3, 0.4, 0.0]), [0.3, 0.4, 0.0])):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = loss_fn(x, g)
        np.testing.assert_allclose(tape.gradient(y, x), want, rtol=1e-6)
        np.testing.assert_allclose(y, float(tf.reduce_sum(x * g)), rtol=1e-6)  # forward is the identity


def test_override_map_is_honoured_by_tf_gradients_but_not_by_gradient_tape() -> None:
    x = np.array([-1.0, 2.0, 3.0, -0.5, 0.7])
    up = np.array([1.0, -1.0, 2.0, 1.0, 0.5])
    plain = up * (x > 0)
    guided = up * (up > 0) * (x > 0)
    assert not np.allclose(plain, guided)  # the two are distinguishable on this input
    via_gradients = gradients.gradient_with_override(tf.nn.relu, x, {"Relu": gradients.GUIDED_RELU}, upstream=up)
    via_tape = gradients.gradient_with_override(tf.nn.relu, x, {"Relu": gradients.GUIDED_RELU}, method="tape",
                                                upstream=up)
    np.testing.assert_allclose(via_gradients, guided)
    np.testing.assert_allclose(via_tape, plain)  # TF 2.21: the tape ignores gradient_override_map


def test_eager_tape_ignores_the_override_map_too() -> None:
    x = tf.constant([-1.0, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        with tf.compat.v1.get_default_graph().gradient_override_map({"Relu": gradients.GUIDED_RELU}):
            y = tf.nn.relu(x)
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=tf.constant([1.0, -1.0])), [0.0, -1.0])


def test_overridden_sin_is_called_only_by_tf_gradients_and_matches_numeric() -> None:
    s = np.linspace(-3, 3, 7)
    before = gradients.OVERRIDE_CALLS[gradients.COUNTED_SIN]
    got = gradients.gradient_with_override(tf.sin, s, {"Sin": gradients.COUNTED_SIN})
    assert gradients.OVERRIDE_CALLS[gradients.COUNTED_SIN] == before + 1
    _, numerical = tf.test.compute_gradient(tf.sin, [tf.constant(s)])
    np.testing.assert_allclose(got, np.diag(numerical[0]), atol=1e-6)
    gradients.gradient_with_override(tf.sin, s, {"Sin": gradients.COUNTED_SIN}, method="tape")
    assert gradients.OVERRIDE_CALLS[gradients.COUNTED_SIN] == before + 1  # the tape did not call it


def test_check_all_passes_every_mechanism() -> None:
    checks = gradients.check_all()
    assert len(checks) >= 10
    for check in checks:
        assert check.max_error < 1e-4, check


def test_which_sin_points_at_tensorflows_registration() -> None:
    info = gradients.which("Sin")
    assert info.function == "tensorflow.python.ops.math_grad._SinGrad"
    assert info.file.endswith("tensorflow/python/ops/math_grad.py")
    assert Path(info.file).read_text().splitlines()[info.line - 1].strip() == '@ops.RegisterGradient("Sin")'
    assert info.doc == "Returns grad * cos(x)."
    assert "cos" in info.source


def test_which_maxpool_relu_and_ours() -> None:
    assert gradients.which("MaxPool").file.endswith("tensorflow/python/ops/nn_grad.py")
    assert gradients.which("Relu").function == "tensorflow.python.ops.nn_grad._ReluGrad"
    ours = gradients.which("PowerDifference")
    assert ours.file.endswith("tfbench/operators/power_difference.py") and "RegisterGradient" in ours.source
    assert gradients.which("Shape").function is None  # registered as not differentiable
    with pytest.raises(UserError, match="did you mean Sin"):
        gradients.which("Sinn")


def test_which_cli_prints_function_file_line_and_docstring() -> None:
    result = subprocess.run([sys.executable, "-m", "tfbench.grads", "which",
                             "Sin", "MaxPool", "Relu", "PowerDifference"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    info = gradients.which("Sin")
    assert f"Sin: tensorflow.python.ops.math_grad._SinGrad\n  {info.file}:{info.line}\n  Returns grad * cos(x)." in out
    assert "MaxPool: tensorflow.python.ops.nn_grad._MaxPoolGrad" in out and "nn_grad.py:" in out
    assert "PowerDifference: tfbench.operators.power_difference._power_difference_grad" in out
