"""Mixed precision: what is kept in which dtype, why float16 needs loss scaling, and bf16's accuracy."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbench import mixed_precision as mp
from tfbench.data import mnist
from tfbench.plumbing.errors import UserError
from tfbench.training import mixed_precision as mp_lib


@pytest.fixture(autouse=True)
def global_policy_is_restored():
    yield
    assert keras.config.dtype_policy().name == "float32"


def test_policy_scope_restores_even_on_error():
    with pytest.raises(RuntimeError):
        with mp_lib.policy_scope("mixed_bfloat16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(UserError, match="mixed_float8"):
        with mp_lib.policy_scope("mixed_float8"):
            pass


@pytest.mark.parametrize("policy, compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_master_weights_float32_compute_16_bit_softmax_float32(policy, compute):
    model = mp_lib.build_model("lenet5", policy)
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
    with mp_lib.policy_scope("mixed_float16"):
        layer = keras.layers.Dense(4)
        layer.build((None, 8))
    with mp_lib.policy_scope("float32"):
        reference = keras.layers.Dense(4)
        reference.build((None, 8))
    reference.set_weights(layer.get_weights())
    x = np.random.default_rng(0).random((64, 8)).astype(np.float32)
    optimizer = mp_lib.make_optimizer("mixed_float16")
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
    assert not isinstance(mp_lib.make_optimizer("mixed_bfloat16"), keras.optimizers.LossScaleOptimizer)
    assert float(tf.cast(tf.constant(1e-30), tf.bfloat16)) != 0.0  # float32's exponent range
    assert float(tf.cast(tf.constant(1e-30), tf.float16)) == 0.0


def test_custom_loop_float16_step_updates_float32_masters():
    model = mp_lib.build_model("lenet5", "mixed_float16")
    optimizer = mp_lib.make_optimizer("mixed_float16")
    step = mp_lib.make_train_step(model, optimizer)
    data = mnist.load_embedded()
    x, y = mnist.pad_to_32(data.x_train[:64]), data.y_train[:64]
    before = [v.numpy().copy() for v in model.trainable_variables]
    losses = [float(step(x, y)) for _ in range(5)]
    after = model.trainable_variables
    assert all(v.dtype == "float32" and np.isfinite(v.numpy()).all() for v in after)
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, after))
    assert losses[-1] < losses[0]
    assert mp_lib.loss_scale(optimizer) >= 1.0


@pytest.mark.slow
def test_bfloat16_lenet5_accuracy_within_half_a_point_of_float32():
    """Trained to convergence (20 epochs) on the 4,000 embedded MNIST digits: on 1,000 test digits one
    digit is 0.1 point, and float32 alone moves by several tenths from one seed to another."""
    data = mnist.load_embedded()
    f32 = mp_lib.train_lenet5(data, "float32", "function")
    bf16 = mp_lib.train_lenet5(data, "mixed_bfloat16", "function")
    assert f32.accuracy > 0.9
    assert bf16.accuracy >= f32.accuracy - 0.005
    assert bf16.compute_dtype == "bfloat16" and bf16.variable_dtype == "float32"


def test_benchmark_writes_json(tmp_path):
    report = mp.run_benchmark(["--epochs", "1", "--policies", "float32,mixed_bfloat16", "--loops", "function,fit",
                               "--models", "lenet5", "--batch-size", "64", "--warmup", "1", "--repeats", "2",
                               "--logdir", str(tmp_path)])
    [path] = tmp_path.glob("bench/mixed_precision-*.json")
    data = json.loads(path.read_text())
    assert data["bench"] == "mixed_precision" and data["cpu"] and "cpu_flags" in data
    policies = ("float32", "mixed_bfloat16")
    expected = {f"lenet5@32/b64/train/keras/{p}/{loop}" for p in policies for loop in mp_lib.TRAIN_LOOPS}
    expected |= {f"lenet5@32/b64/train/module/{p}/{loop}" for p in policies for loop in ("function", "function_xla")}
    assert {r["case"] for r in data["rows"]} == expected
    assert "lenet5@32 b64 train keras fit: mixed_bfloat16 speed-up vs float32" in data["ratios"]
    assert "lenet5@32 b64 train keras float32: function time / fit time" in data["ratios"]
    assert "lenet5@32 b64 train keras float32: function_xla time / fit_xla time" in data["ratios"]
    assert "lenet5@32 b64 train float32 function: module speed-up vs keras" in data["ratios"]
    assert all(r["variable_dtype"] == "float32" and r["output_dtype"] == "float32" for r in data["rows"])
    assert {r["compute_dtype"] for r in data["rows"] if r["policy"] == "mixed_bfloat16"} == {"bfloat16"}
    assert all(r["median_ms"] > 0 and r["examples_per_s"] > 0 for r in data["rows"])
    assert all("accuracy" in r for r in data["rows"] if r["impl"] == "keras" and r["loop"] in ("fit", "function"))
    assert data["bf16_speedup_expected"] is (not data["note"].startswith("no bfloat16"))
    assert data["bf16_speedup_expected"] is bool(data["cpu_flags"]["avx512_bf16"] or data["cpu_flags"]["amx_bf16"])
    assert {t["policy"] for t in data["training"]} == {"float32", "mixed_bfloat16"}
    assert report["path"] == str(path)
    assert list(tmp_path.glob("mixed_precision/*/report.json"))


def test_vgg19_under_bfloat16_and_its_photo_batch():
    model = mp_lib.build_model("vgg19", "mixed_bfloat16", vgg_input=32)
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("fc1").kernel.dtype == "float32" and model.output.dtype == "float32"
    x, y = mp_lib.vgg_batch(3, 32)
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.float32 and -1.0 <= x.min() < x.max() <= 1.0
    assert y.shape == (3,) and y.max() < 1000
    probs = model(x)
    assert probs.shape == (3, 1000) and probs.dtype == "float32"


def test_all_cases_of_a_configuration_run_in_the_same_rounds(monkeypatch):
    """Policies, loops, XLA variants and both implementations alternate call by call, never group by group."""
    calls: list[str] = []
    real_compare = mp_lib.timing.compare

    def spy(cases, **kwargs):
        wrapped = {name: (lambda name=name, fn=fn: (calls.append(name), fn())[1]) for name, fn in cases.items()}
        return real_compare(wrapped, **kwargs)

    monkeypatch.setattr(mp_lib.timing, "compare", spy)
    config = mp_lib.Config("lenet5", 32, 8, False, ("float32", "mixed_bfloat16"))
    x = np.zeros((8, 32, 32, 1), np.float32)
    y = np.arange(8) % 10
    timings = mp_lib.time_config(config, x, y, impls=("keras", "module"), loops=("fit", "function"), warmup=1,
                                 repeats=2)
    names = [t.case for t in timings]
    assert len(names) == 12
    timed = calls[len(names):]  # after one warm-up call of each case
    assert timed == names + names  # round robin: every case once per round


def test_fit_train_functions_are_made_once_and_not_retraced():
    """fit and fit_xla share one model: each keeps its own train function, traced once however they alternate."""
    config = mp_lib.Config("lenet5", 32, 8, False, ("float32",))
    x, y = tf.constant(np.zeros((8, 32, 32, 1), np.float32)), tf.constant(np.arange(8) % 10)
    built = mp_lib.keras_cases(config, "float32", x, y)
    fit, fit_xla = built["cases"][("train", "fit")], built["cases"][("train", "fit_xla")]
    model = built["model"]
    seen = {"fit": set(), "fit_xla": set()}
    for _ in range(3):
        fit()
        seen["fit"].add(id(model.train_function))
        fit_xla()
        seen["fit_xla"].add(id(model.train_function))
    assert len(seen["fit"]) == len(seen["fit_xla"]) == 1  # the same two functions each time, never rebuilt
    assert seen["fit"] != seen["fit_xla"]


def test_module_train_step_matches_keras_step_under_bfloat16():
    """Same weights, same batch, one Adam step: the module's float32 masters move like the Keras model's."""
    x = np.random.default_rng(0).random((16, 32, 32, 1)).astype(np.float32)
    y = np.arange(16) % 10
    keras_model = mp_lib.build_model("lenet5", "mixed_bfloat16")
    from tfbench.models import lenet5

    module = lenet5.LeNet5Module(lenet5.keras_weights(keras_model), activation="relu", compute_dtype="bfloat16")
    k_loss = float(mp_lib.make_train_step(keras_model, mp_lib.make_optimizer("mixed_bfloat16"))(x, y))
    m_loss = float(mp_lib.module_train_step(module, mp_lib.make_optimizer("mixed_bfloat16"))(x, y))
    assert abs(k_loss - m_loss) < 1e-2 * abs(k_loss)
    after_keras, after_module = lenet5.keras_weights(keras_model), module.get_weights()
    for name in after_keras:
        np.testing.assert_allclose(after_module[name][0], after_keras[name][0], atol=2e-4)


def test_bad_flags_are_user_errors():
    with pytest.raises(UserError, match="--policies"):
        mp.parse_args(["--policies", "float64"])
    with pytest.raises(UserError, match="divisible by 32"):
        mp_lib.build_model("vgg19", "float32", vgg_input=48)


# ---------------------------------------------------------------- --model: the user's own Keras model

@pytest.fixture(scope="module")
def user_models(tmp_path_factory):
    """A small convnet with a softmax output saved as .keras, and a SavedModel (no Keras layers)."""
    root = tmp_path_factory.mktemp("user_models")
    keras.utils.set_random_seed(0)
    layers = [keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
              keras.layers.Conv2D(8, 3, strides=2, activation="relu"), keras.layers.Flatten(),
              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10, activation="softmax")]
    convnet = keras.Sequential(layers, name="convnet")
    convnet.save(root / "convnet.keras")

    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.ones((6, 3)))

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)])
        def __call__(self, x):
            return tf.matmul(x, self.w)

    tf.saved_model.save(Affine(), str(root / "affine"))
    return {"keras": root / "convnet.keras", "savedmodel": root / "affine"}


def test_clone_under_policy_keeps_weights_and_float32_outputs():
    from tfbench.models.precision import clone_under_policy

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    twin = clone_under_policy(model, "mixed_float16", float32_outputs=True)
    assert twin.get_layer("hidden").compute_dtype == "float16" and twin.get_layer("out").compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in twin.weights)
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert clone_under_policy(model, "mixed_bfloat16").get_layer("out").compute_dtype == "bfloat16"
    with pytest.raises(ValueError, match="mixed_float8"):
        clone_under_policy(model, "mixed_float8")


def test_user_model_under_each_policy(user_models, tmp_path, capsys, monkeypatch):
    from tfbench.timing import machine

    monkeypatch.setattr(machine, "_HEADER_PRINTED", set())  # the header prints once per process: this run's
    report = mp.run_benchmark(["--model", str(user_models["keras"]), "--batch-size", "4", "--warmup", "1",
                               "--repeats", "2", "--logdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.startswith("== mixed_precision ==\nmachine: ") and "\nbfloat16: " in out
    assert out.rstrip().endswith(report["note"])  # the CPU caveat, as for LeNet-5 and VGG19
    assert "accuracy" not in out and "lenet5" not in out and "vgg19" not in out  # only the user's model
    [path] = tmp_path.glob("bench/mixed_precision-*.json")
    data = json.loads(path.read_text())
    assert {r["case"] for r in data["rows"]} == {f"convnet/{kind}/{p}" for kind in ("forward", "train")
                                                 for p in mp_lib.POLICIES}
    assert data["training"] == []
    runs = {r["policy"]: r for r in data["model"]["policies"]}
    assert set(runs) == set(mp_lib.POLICIES)
    scale = data["model"]["output_scale"]
    assert runs["float32"]["max_abs_diff"] == 0.0 and runs["float32"]["forward_speedup"] == 1.0
    assert 0.0 < runs["mixed_bfloat16"]["max_abs_diff"] < 0.05 * scale  # bfloat16: 8 significant bits
    assert 0.0 < runs["mixed_float16"]["max_abs_diff"] < 0.01 * scale
    assert runs["mixed_float16"]["optimizer"] == "LossScaleOptimizer" and runs["mixed_bfloat16"]["optimizer"] == "Adam"
    assert {r["compute_dtype"] for r in data["model"]["policies"]} == {"float32", "bfloat16", "float16"}
    assert all(r["variable_dtype"] == r["output_dtype"] == "float32" for r in data["model"]["policies"])
    assert all(r["median_ms"] > 0 for r in data["rows"])
    assert "convnet (16x16x3) b4 train: mixed_bfloat16 speed-up vs float32" in data["ratios"]
    [run_dir] = tmp_path.glob("mixed_precision/*")
    assert (run_dir / "report.json").exists() and list(run_dir.glob("events.out.tfevents.*"))


def test_user_model_clones_and_optimizers(user_models):
    model = keras.models.load_model(user_models["keras"])
    result = mp_lib.time_model_policies(model, name="convnet", input_shape=(16, 16, 3), batch=2,
                                        policies=("mixed_float16", "mixed_bfloat16"), repeats=1)
    assert [r.policy for r in result.runs] == ["float32", "mixed_float16", "mixed_bfloat16"]  # float32 first
    assert isinstance(result.optimizers["mixed_float16"], keras.optimizers.LossScaleOptimizer)
    assert not isinstance(result.optimizers["mixed_bfloat16"], keras.optimizers.LossScaleOptimizer)
    for policy, compute in (("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")):
        clone = result.models[policy]
        conv = clone.layers[0]
        assert conv.variable_dtype == "float32" and conv.compute_dtype == compute
        assert clone.layers[-1].compute_dtype == "float32"  # the softmax output
        assert clone(np.zeros((1, 16, 16, 3), np.float32)).dtype == "float32"
    assert "| mixed_float16 |" in result.markdown()


def test_savedmodel_is_refused_in_one_line(user_models, tmp_path, capsys):
    from tfbench.plumbing.errors import run_cli

    with pytest.raises(SystemExit) as stop:
        run_cli(mp.main, ["--model", str(user_models["savedmodel"]), "--logdir", str(tmp_path)])
    assert stop.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "need Keras layers" in err[0], err
    assert not list(tmp_path.glob("bench/*.json"))


def test_inspect_modes_run_the_bfloat16_clone_where_the_cpu_has_it():
    """``inspect``'s bfloat16 mode clones through the same function (the CPU's flags given, so it runs anywhere)."""
    from tfbench.inspection.modes import run_modes

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    x = tf.constant(np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32))
    report = run_modes(lambda t: model(t, training=False), x, keras_model=model, repeats=1,
                       cpu_flags={"avx512_bf16": True})
    row = report.row("bfloat16 tf.function")
    assert not report.bfloat16_skipped and row is not None and 0.0 < row.max_abs_diff < 0.1
