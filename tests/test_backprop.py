"""Chapter 2 on the bench (tfbench.backprop): each exercise's answer, checked against an independent reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfbench.backprop import activations, adder, momentum, new_activation, perceptron


# ---------------------------------------------------------------- 1.3, 2.2
@pytest.mark.parametrize("gate", ["AND", "OR", "NAND"])
def test_one_neuron_separates_the_linear_gates(gate):
    result = perceptron.train_neuron(gate)
    assert result.converged and result.correct == 4
    assert result.outputs == perceptron.GATES[gate]
    w = np.array(result.w)  # the line really separates: every point strictly on its side
    margins = (perceptron.INPUTS @ w + result.b) * (2 * np.array(perceptron.GATES[gate]) - 1)
    assert np.all(margins > 0)


def test_one_neuron_fails_xor_and_the_mlp_learns_it():
    result = perceptron.train_neuron("XOR", max_epochs=1000)
    assert not result.converged and result.correct < 4
    mlp = perceptron.train_xor_mlp()
    assert mlp.outputs == perceptron.GATES["XOR"] and mlp.correct == 4
    assert max(abs(p - t) for p, t in zip(mlp.probabilities, perceptron.GATES["XOR"])) < 0.1


def test_parameters_of_the_33_512_10_mlp_from_both_counters():
    count = perceptron.mlp_parameters((33, 512, 10))
    assert count.tfbench == count.keras == count.by_hand == 22_538
    assert count.per_layer == [("hidden1", 33 * 512 + 512), ("output", 512 * 10 + 10)]
    with pytest.raises(ValueError, match="at least one layer width"):
        perceptron.mlp_parameters((33,))


# ---------------------------------------------------------------- 2.4, 2.6, 2.7
def test_closed_form_derivatives_match_the_tape():
    checks = activations.derivative_checks()
    assert [c.at_zero for c in checks] == [0.25, 1.0]
    for check in checks:
        assert check.points >= 1000 and check.max_abs_error < 1e-6, check


def test_a_wrong_derivative_is_caught():
    wrong = activations.check_derivative("sigmoid", "s", tf.sigmoid, lambda v: 1.0 / (1.0 + np.exp(-v)))
    assert wrong.max_abs_error > 0.1


def test_activation_ranges():
    by_name = {r.name: r for r in activations.ranges()}
    assert set(by_name) == {"sigmoid", "tanh", "ReLU", "leaky ReLU", "ELU"}
    assert 0 < by_name["sigmoid"].measured_min < by_name["sigmoid"].measured_max < 1
    assert by_name["ReLU"].measured_min == 0 and by_name["ReLU"].measured_max == 10
    assert by_name["leaky ReLU"].measured_min == pytest.approx(-10 * activations.LEAKY_SLOPE)
    assert -1 < by_name["ELU"].measured_min < -0.99
    assert by_name["sigmoid"].slope_at_zero == pytest.approx(0.25) and by_name["tanh"].slope_at_zero == 1


# ---------------------------------------------------------------- 2.10
def test_new_activation_gradient_passes_compute_gradient():
    check = new_activation.gradient_check()
    assert check.max_error_finite_differences < 1e-6
    assert check.max_error_autodiff < 1e-12
    x = tf.constant(np.linspace(-5, 5, 41))  # and once more here, with the test's own call of compute_gradient
    theoretical, numerical = tf.test.compute_gradient(new_activation.algebraic_swish, [x])
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-6)


def test_new_activation_uses_its_registered_gradient_inside_tf_function():
    v = tf.constant([-2.0, 0.0, 3.0], tf.float64)

    @tf.function
    def slope(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = new_activation.algebraic_swish(x)
        return tape.gradient(y, x)

    expected = 0.5 * (1 + v / np.sqrt(1 + v**2)) + 0.5 * v * (1 + v**2) ** -1.5
    np.testing.assert_allclose(slope(v).numpy(), expected.numpy(), rtol=1e-12)
    graph = slope.get_concrete_function(v).graph  # the forward's output carries the registered gradient's name
    overrides = [op.get_attr("_gradient_op_type").decode() for op in graph.get_operations()
                 if "_gradient_op_type" in op.node_def.attr]
    assert overrides and all(name.startswith("CustomGradient") for name in overrides), overrides
    assert float(new_activation.algebraic_swish(tf.constant(0.0, tf.float64))) == 0.0


def test_new_activation_trains_an_mlp():
    results, source = new_activation.train_comparison(epochs=2, train_limit=2000)
    assert "MNIST" in source
    ours = next(r for r in results if "ours" in r.activation)
    relu = next(r for r in results if r.activation == "ReLU")
    assert ours.test_accuracy[-1] > 0.8  # 10 classes: chance is 0.1
    assert abs(ours.test_accuracy[-1] - relu.test_accuracy[-1]) < 0.05  # on a par with ReLU


# ---------------------------------------------------------------- 2.11, 2.12
def test_numpy_gradients_equal_tensorflows():
    data = adder.adder_data()
    assert len(data.train) == 192 and len(data.test) == 64 and not set(data.train) & set(data.test)
    assert np.array_equal(data.y @ 2 ** np.arange(5), data.a + data.b)
    for seed in (0, 1):
        weights = adder.initial_weights(seed=seed)
        weights = [w + np.random.default_rng(seed).normal(0, 0.1, w.shape) for w in weights]  # biases not 0 too
        assert adder.gradient_difference(weights, data) < 1e-5


def test_numpy_adam_follows_keras_adam():
    data = adder.adder_data()
    weights = adder.initial_weights()
    tf_weights, tf_losses = adder.train_tensorflow(data, weights, steps=20)
    net, np_losses = adder.train_numpy(data, weights, steps=20)
    np.testing.assert_allclose(np_losses, tf_losses, rtol=1e-12)
    for a, b in zip(tf_weights, net.params):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_both_adders_get_held_out_sums_right():
    result = adder.compare()
    assert result.gradient_difference < 1e-5
    for score in (result.tensorflow, result.numpy):
        assert score.sum_accuracy >= 0.95, score
        assert min(score.bit_accuracy) >= 0.95
    assert result.losses["tensorflow"][-1] < result.losses["tensorflow"][0] / 5


# ---------------------------------------------------------------- 2.9
def test_momentum_signs_have_opposite_effects():
    curves = [momentum.train(mu, steps=200) for mu in (-0.9, -0.5, 0.0, 0.5, 0.9)]
    steps = {c.mu: c.steps_to(momentum.TARGET_LOSS) for c in curves}
    assert steps[0.9] < steps[0.5] < steps[0.0] < steps[-0.5]  # 35, 63, 114, 168 here
    by_mu = {c.mu: c for c in curves}
    assert by_mu[-0.9].rise_fraction > 0.2 and by_mu[0.0].rise_fraction == 0
    words = momentum.describe(curves)
    assert any("+0.9" in s and "faster" in s for s in words)
    assert any("-0.5" in s and "slower" in s for s in words)
    assert any("-0.9" in s and "oscillates" in s for s in words)
    with pytest.raises(ValueError, match="in \\[-1, 1\\]"):
        momentum.train(1.5, steps=1)
