"""Magnitude pruning: the schedule, the masks, the NumPy network's gradients, and dense-vs-sparse accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfbench import sparsity
from tfbench.data import mnist
from tfbench.plumbing.errors import UserError
from tfbench.training import sparsity as sparsity_lib


@pytest.fixture(scope="module")
def digits():
    return mnist.load_embedded()


def test_polynomial_schedule():
    s = sparsity_lib.Schedule(final=0.5, begin_step=100, end_step=300)
    assert s.sparsity(0) == 0.0 and s.sparsity(100) == 0.0
    assert s.sparsity(200) == pytest.approx(0.5 - 0.5 * 0.5 ** 3)  # Zhu & Gupta, cubic
    assert s.sparsity(300) == 0.5 and s.sparsity(10_000) == 0.5
    values = [s.sparsity(t) for t in range(0, 400, 7)]
    assert values == sorted(values)
    assert s.should_update(100) and s.should_update(110) and not s.should_update(105) and s.should_update(300)
    assert not s.should_update(310)
    with pytest.raises(UserError):
        sparsity_lib.Schedule(final=1.0)


def test_magnitude_mask_zeros_the_smallest():
    w = np.random.default_rng(0).normal(size=(37, 11)).astype(np.float32)
    mask = sparsity_lib.magnitude_mask(w, 0.5)
    k = int(0.5 * w.size)
    assert int((mask == 0).sum()) == k
    cutoff = np.sort(np.abs(w).ravel())[k - 1]
    assert np.all(np.abs(w)[mask == 0] <= cutoff) and np.all(np.abs(w)[mask == 1] >= cutoff)


def test_numpy_gradients_match_tensorflow():
    net = sparsity_lib.NumpyMLP(sizes=(20, 16, 8, 5), seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(9, 20)).astype(np.float32), rng.integers(0, 5, 9)
    loss, grad_w, grad_b = net.loss_and_grads(x, y)
    params = [tf.Variable(p) for p in net.weights + net.biases]
    with tf.GradientTape() as tape:
        h = tf.convert_to_tensor(x)
        for i in range(3):
            h = h @ params[i] + params[3 + i]
            h = tf.nn.relu(h) if i < 2 else h
        tf_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, h))
    tf_grads = tape.gradient(tf_loss, params)
    assert loss == pytest.approx(float(tf_loss), rel=1e-5)
    for ours, ref in zip(grad_w + grad_b, tf_grads):
        np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-4, atol=1e-6)


def test_pruned_weights_stay_zero_after_every_adam_update(digits):
    import keras

    from tfbench.models.lenet5 import build_keras_lenet5

    model = build_keras_lenet5(activation="relu")
    pruner = sparsity_lib.Pruner(model, sparsity_lib.Schedule(final=0.5, end_step=1))
    step = sparsity_lib.make_sparse_train_step(model, keras.optimizers.Adam(1e-2), pruner)
    x, y = mnist.pad_to_32(digits.x_train[:32]), digits.y_train[:32]
    step(x, y)  # dense step: Adam now has momentum for every weight
    pruner.update_masks(1)
    before = [k.numpy().copy() for k in pruner.kernels]
    for _ in range(3):
        step(x, y)
        for kernel, mask in zip(pruner.kernels, pruner.masks):
            assert np.all(kernel.numpy()[mask.numpy() == 0] == 0)
    assert all(v == pytest.approx(0.5, abs=1e-3) for v in pruner.layer_sparsity().values())
    assert any(not np.array_equal(b, k.numpy()) for b, k in zip(before, pruner.kernels))  # it did train


@pytest.mark.parametrize("name", [pytest.param("lenet5", marks=pytest.mark.slow), "mlp"])
def test_half_sparse_model_is_within_one_point_of_dense(name, digits):
    dense = sparsity_lib.train_keras(name, digits, final_sparsity=0.0)
    sparse = sparsity_lib.train_keras(name, digits, final_sparsity=0.5)
    assert all(v == 0.0 for v in dense.layer_sparsity.values())
    assert all(v >= 0.5 for v in sparse.layer_sparsity.values())
    assert dense.accuracy > 0.9
    assert sparse.accuracy >= dense.accuracy - 0.01


def test_numpy_network_reaches_half_sparsity(digits):
    result = sparsity_lib.train_numpy(digits, final_sparsity=0.5, epochs=4)
    assert set(result.layer_sparsity) == {"fc1", "fc2", "fc3"}
    assert all(v >= 0.5 for v in result.layer_sparsity.values())
    assert result.sparsity_curve[0] < result.sparsity_curve[-1]
    assert result.accuracy > 0.9


def test_cli_writes_report(tmp_path, capsys):
    assert sparsity.main(["--models", "numpy", "--epochs", "1", "--logdir", str(tmp_path)]) == 0
    [report] = tmp_path.glob("sparsity/*/report.json")
    data = json.loads(report.read_text())
    assert [r["final_sparsity"] for r in data["results"]] == [0.0, 0.5]
    out = capsys.readouterr().out
    assert out.count("sparse (50%) - dense accuracy") == 1
    rows = [line for line in out.splitlines() if line.startswith("numpy") and " target " in line]
    assert len(rows) == 2, out  # each run printed once: dense, then 50%
    with pytest.raises(UserError, match="--sparsity"):
        sparsity.main(["--sparsity", "1.5"])
