"""One-shot pruning of a user's model: kernels at the asked sparsity, biases and the model untouched, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfbench import sparsity
from tfbench.plumbing import errors
from tfbench.plumbing.errors import UserError
from tfbench.training import one_shot

LEVELS = (0.0, 0.1, 0.25, 0.5)  # past 0.5 this small random model's output is already unrelated to the dense one
KERNELS = {"conv", "dw", "sep/depthwise_kernel", "sep/pointwise_kernel", "fc", "einsum"}


def small_model():
    """Every prunable layer type, a norm, and a Conv2DTranspose (named as not pruned)."""
    import keras

    keras.utils.set_random_seed(0)
    x = keras.Input((32, 32, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Conv2DTranspose(8, 1, name="up")(h)
    h = keras.layers.DepthwiseConv2D(3, name="dw")(h)
    h = keras.layers.SeparableConv2D(16, 3, name="sep")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(32, activation="relu", name="fc")(h)
    out = keras.layers.EinsumDense("ab,bc->ac", output_shape=10, bias_axes="c", name="einsum")(h)
    return keras.Model(x, out)


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``sparsity --model small.keras`` once: its report, its run folder, and what it printed."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("one_shot")
    small_model().save(tmp / "small.keras")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert sparsity.main(["--model", str(tmp / "small.keras"), "--sparsities", ",".join(map(str, LEVELS)),
                              "--repeats", "2", "--logdir", str(tmp / "logs")]) == 0
    [report] = (tmp / "logs").glob("sparsity/*/report.json")
    return json.loads(report.read_text()), report.parent, out.getvalue()


def test_every_kernel_reaches_the_sparsity_and_biases_stay(model):
    names = [label for label, _ in one_shot.model_kernels(model)]
    assert set(names) == KERNELS
    variables = [v for _, v in one_shot.model_kernels(model)]
    kernel_ids = {id(v) for v in variables}
    others_before = [w.numpy().copy() for w in model.weights if id(w) not in kernel_ids]
    for level in (0.5, 0.9):
        with one_shot.kernels_restored(variables) as dense:
            for v, value in zip(variables, one_shot.pruned_values(dense, level)):
                v.assign(value)
            for v in variables:  # NumPy on the weights the model now holds
                w = v.numpy()
                assert abs(int(np.sum(w == 0)) - level * w.size) <= 1, (v.path, level)
            others = [w.numpy() for w in model.weights if id(w) not in kernel_ids]
            for before, now in zip(others_before, others):  # biases, the norm, Conv2DTranspose: as they were
                np.testing.assert_array_equal(before, now)
    assert one_shot.skipped_layers(model) == ["up (Conv2DTranspose)"]


def test_the_model_is_restored_and_the_output_moves_with_sparsity(model):
    before = [w.copy() for w in model.get_weights()]
    x, _ = one_shot.probe_batch((32, 32, 3), "float32", 8)
    result = one_shot.one_shot(model, x, LEVELS, warmup=1, repeats=2)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    changes = [r.relative_l2_change for r in result.rows]
    assert [r.sparsity for r in result.rows] == list(LEVELS)
    assert changes[0] == 0.0 and result.rows[0].top1_unchanged == 1.0
    assert changes == sorted(changes) and changes[-1] > 0
    assert all(r.compressed_bytes < result.rows[0].compressed_bytes for r in result.rows[1:])
    assert len({r.raw_bytes for r in result.rows}) == 1  # the zeros are stored: raw size unchanged


def test_probe_batch_photos_or_seeded_random():
    photos, text = one_shot.probe_batch((40, 48, 3), "float32", 3)
    assert photos.shape == (3, 40, 48, 3) and "chelsea" in text and -1.0 <= photos.min() < photos.max() <= 1.0
    a, text = one_shot.probe_batch((10,), "float32", 4, seed=3)
    b, _ = one_shot.probe_batch((10,), "float32", 4, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 10) and "random uniform" in text and 0.0 <= a.min() and a.max() < 1.0
    tokens, _ = one_shot.probe_batch((5,), "int32", 2, layers=[type("E", (), {"input_dim": 7})()])
    assert tokens.dtype == np.int32 and tokens.max() < 7
    with pytest.raises(UserError, match="--sparsities"):
        one_shot.parse_sparsities("0.5,1")


def test_cli_prints_and_writes_the_report(cli_run):
    report, run_dir, out = cli_run
    assert [r["sparsity"] for r in report["rows"]] == list(LEVELS)
    assert report["rows"][0]["relative_l2_change"] == 0.0
    assert all(r["compressed_bytes"] < report["rows"][0]["compressed_bytes"] for r in report["rows"][1:])
    assert set(report["layer_sparsity"]) == KERNELS and report["skipped"] == ["up (Conv2DTranspose)"]
    assert "scikit-image's bundled photos" in report["batch"] and report["machine"]["cpu"]
    assert list((run_dir / "small").glob("events.out.tfevents.*"))
    assert "rel. L2 change" in out and "report: " in out
    assert "sep/pointwise_kernel: 10% -> " in out and "50% -> 50.0%" in out


def test_savedmodel_is_one_error_line(tmp_path, capsys):
    import tensorflow as tf

    module = tf.Module()
    module.w = tf.Variable(tf.ones((4, 3)))
    module.__call__ = tf.function(lambda x: x @ module.w, input_signature=[tf.TensorSpec((None, 4), tf.float32)],
                                  autograph=False)
    tf.saved_model.save(module, str(tmp_path / "sm"))
    with pytest.raises(SystemExit) as stop:
        errors.run_cli(sparsity.main, ["--model", str(tmp_path / "sm"), "--logdir", str(tmp_path / "logs")])
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pruning needs Keras layers" in lines[0], lines
