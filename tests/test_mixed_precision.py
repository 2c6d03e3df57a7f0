"""Mixed precision: what is kept in which dtype, why float16 needs loss scaling, and bf16's accuracy."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbench import mixed_precision as mp
from tfbench.data import mnist
from tfbench.errors import UserError


@pytest.fixture(autouse=True)
def global_policy_is_restored():
    yield
    assert keras.config.dtype_policy().name == "float32"


def test_policy_scope_restores_even_on_error():
    with pytest.raises(RuntimeError):
        with mp.policy_scope("mixed_bfloat16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(UserError, match="mixed_float8"):
        with mp.policy_scope("mixed_float8"):
            pass


@pytest.mark.parametrize("policy, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_master_weights_float32_compute_16_bit_softmax_float32(policy, compute):
    model = mp.build_model("lenet5", policy)
    conv = model.get_layer("c1")
    assert conv.kernel.dtype == "float32" and conv.compute_dtype == compute
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    x = np.zeros((2, 32, 32, 1), np.float32)
    hidden = keras.Model(model.input, model.get_layer("output").output)(x)
    assert hidden.dtype == compute  # the logits are 16-bit ...
    probs = model(x)
    assert probs.dtype == "float32"  # ... the softmax is float32
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-6)


def test_float16_gradients_underflow_without_loss_scaling():
    """A tiny loss: its float16 gradients flush to zero unless the loss is scaled first."""
    with mp.policy_scope("mixed_float16"):
        layer = keras.layers.Dense(4)
        layer.build((None, 8))
    with mp.policy_scope("float32"):
        reference = keras.layers.Dense(4)
        reference.build((None, 8))
    reference.set_weights(layer.get_weights())
    x = np.random.default_rng(0).random((64, 8)).astype(np.float32)
    optimizer = mp.make_optimizer("mixed_float16")
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    optimizer.build(layer.trainable_variables)

    def grads(model, scale_with=None):
        with tf.GradientTape() as tape:
            loss = 1e-6 * tf.reduce_mean(tf.cast(model(x), tf.float32))
            if scale_with is not None:
                loss = scale_with.scale_loss(loss)
        return tape.gradient(loss, model.kernel)

    exact = grads(reference).numpy()
    unscaled = grads(layer).numpy()
    scaled = grads(layer, optimizer).numpy() / optimizer.dynamic_scale.numpy()
    assert np.all(exact != 0) and np.all(unscaled == 0)  # underflow: below float16's 6e-8
    np.testing.assert_allclose(scaled, exact, rtol=2e-3)


def test_bfloat16_needs_no_loss_scaling():
    assert not isinstance(mp.make_optimizer("mixed_bfloat16"), keras.optimizers.LossScaleOptimizer)
    assert float(tf.cast(tf.constant(1e-30), tf.bfloat16)) != 0.0  # float32's exponent range
    assert float(tf.cast(tf.constant(1e-30), tf.float16)) == 0.0


def test_custom_loop_float16_step_updates_float32_masters():
    model = mp.build_model("lenet5", "mixed_float16")
    optimizer = mp.make_optimizer("mixed_float16")
    step = mp.make_train_step(model, optimizer)
    data = mnist.load_embedded()
    x, y = mnist.pad_to_32(data.x_train[:64]), data.y_train[:64]
    before = [v.numpy().copy() for v in model.trainable_variables]
    losses = [float(step(x, y)) for _ in range(5)]
    after = model.trainable_variables
    assert all(v.dtype == "float32" and np.isfinite(v.numpy()).all() for v in after)
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, after))
    assert losses[-1] < losses[0]
    assert mp.loss_scale(optimizer) >= 1.0


@pytest.mark.slow
def test_bfloat16_lenet5_accuracy_within_half_a_point_of_float32():
    """Trained to convergence (20 epochs) on the 4,000 embedded MNIST digits: on 1,000 test digits one
    digit is 0.1 point, and float32 alone moves by several tenths from one seed to another."""
    data = mnist.load_embedded()
    f32 = mp.train_lenet5(data, "float32", "function")
    bf16 = mp.train_lenet5(data, "mixed_bfloat16", "function")
    assert f32.accuracy > 0.9
    assert bf16.accuracy >= f32.accuracy - 0.005
    assert bf16.compute_dtype == "bfloat16" and bf16.variable_dtype == "float32"


def test_benchmark_writes_json(tmp_path):
    report = mp.run_benchmark(["--epochs", "1", "--policies", "float32,mixed_bfloat16", "--loops", "function,fit",
                               "--models", "lenet5", "--batch-size", "64", "--warmup", "1", "--repeats", "2",
                               "--logdir", str(tmp_path)])
    [path] = tmp_path.glob("bench/mixed_precision-*.json")
    data = json.loads(path.read_text())
    assert data["bench"] == "mixed_precision" and data["cpu"]
    assert {r["case"] for r in data["rows"]} == {f"lenet5/{p}/{loop}" for p in ("float32", "mixed_bfloat16")
                                                for loop in ("function", "fit")}
    assert "lenet5 fit speed-up mixed_bfloat16 vs float32" in data["ratios"]
    assert all(r["variable_dtype"] == "float32" and r["output_dtype"] == "float32" for r in data["rows"])
    assert all(r["median_ms"] > 0 and r["examples_per_s"] > 0 and "accuracy" in r for r in data["rows"])
    assert {t["policy"] for t in data["training"]} == {"float32", "mixed_bfloat16"}
    assert report["path"] == str(path)
    assert list(tmp_path.glob("mixed_precision/*/report.json"))


def test_vgg19_under_bfloat16_and_its_photo_batch():
    model = mp.build_model("vgg19", "mixed_bfloat16", vgg_input=32)
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("fc1").kernel.dtype == "float32" and model.output.dtype == "float32"
    x, y = mp.vgg_batch(3, 32)
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.float32 and -1.0 <= x.min() < x.max() <= 1.0
    assert y.shape == (3,) and y.max() < 1000
    probs = model(x)
    assert probs.shape == (3, 1000) and probs.dtype == "float32"


def test_bad_flags_are_user_errors():
    with pytest.raises(UserError, match="--policies"):
        mp.parse_args(["--policies", "float64"])
    with pytest.raises(UserError, match="divisible by 32"):
        mp.build_model("vgg19", "float32", vgg_input=48)
