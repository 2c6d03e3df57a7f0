"""``python -m tfbench.inspect`` and ``tfbench.inspect_model`` on models this test writes and saves itself.

Real models, real files: a small functional model with depthwise, separable and transposed
convolutions (``.keras`` and ``.h5``), an attention block, a SavedModel exported from a
``tf.Module``, a factory; each inspected and checked against Keras' own ``count_params``, the
TensorFlow profiler, and the eager outputs.  Every bad input is exit 2 with one ``error:`` line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers as L

import tfbench
from tfbench import models, timing
from tfbench.models import load, zoo
from tfbench.models.cross_check import cross_check
from tfbench.plumbing.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def small_convnet(shape=(16, 16, 3)) -> keras.Model:
    keras.utils.set_random_seed(0)
    i = keras.Input(shape, name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(i)
    x = L.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = L.SeparableConv2D(16, 3, padding="same", name="separable")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2DTranspose(8, 3, strides=2, padding="same", name="transposed")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, L.Dense(5, name="fc")(x), name="small")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    out = {}
    model = small_convnet()
    out["keras"] = root / "small.keras"
    model.save(out["keras"])
    out["h5"] = root / "small.h5"
    model.save(out["h5"])
    keras.utils.set_random_seed(1)
    q = keras.Input((6, 16), name="tokens")
    a = L.MultiHeadAttention(2, 8, name="attention")(q, q)
    x = L.LayerNormalization(name="norm")(L.Add(name="residual")([q, a]))
    out["attention"] = root / "attention.keras"
    keras.Model(q, L.Dense(4, name="head")(x), name="attention").save(out["attention"])

    class Affine(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal((6, 3), seed=[0, 1]), name="w")
            self.b = tf.Variable(tf.zeros(3), name="b")

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)])
        def __call__(self, x):
            return tf.nn.relu(tf.matmul(x, self.w) + self.b)

    out["savedmodel"] = root / "affine"
    tf.saved_model.save(Affine(), str(out["savedmodel"]))
    return out


def test_small_convnet_full_report(files, tmp_path):
    report = tfbench.inspect_model(files["keras"], repeats=2, ablate=False, logdir=tmp_path)
    model = keras.saving.load_model(files["keras"])
    assert report.params == model.count_params()
    assert report.trainable_params == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert report.uncounted == []
    layers = {c.name: c for c in report.counts.layers}
    assert layers["depthwise"].macs == 16 * 16 * 8 * 9
    assert layers["separable"].macs == 16 * 16 * 8 * 9 + 16 * 16 * 8 * 16
    assert layers["transposed"].macs == 16 * 16 * 16 * 9 * 8  # each input scattered into 3x3x8 outputs
    check = cross_check(report.macs, report.profiler)
    assert check["graph_macs"] == report.macs and check["rules_vs_graph"] == 0
    assert check["profiler_on_compared"] == check["graph_on_compared"] > 0 and check["blind_spots"] == []
    for mode in ("tf.function", "XLA"):
        assert report.modes.row(mode).max_abs_diff < 1e-4
    assert any(label.startswith("FusedConv2D") for label in report.grappler.fused), report.grappler.fused
    m = report.memory
    assert m.estimated_total_mb > 0 and m.measured_forward_mb is not None
    labels = [label for label, _ in m.rows()]
    assert "measured: training step after it, peak RSS above the same start" in labels
    assert m.measured_train_step_mb >= m.measured_forward_mb or "below the first forward call" in m.note
    run = Path(report.run_dir)
    assert {"graph", "optimized", "partition"} <= {p.name for p in run.iterdir()}
    assert (run / "roofline.png").stat().st_size > 0
    assert {r["name"] for r in report.roofline["rows"]} == set(layers)
    data = json.loads(Path(report.json_path).read_text())
    assert data["bench"] == "inspect" and data["params"] == report.params and data["macs"] == report.macs
    assert "<InspectReport small (keras)" in repr(report) and f"{report.params:,} params" in repr(report)
    assert "<h4>summary</h4>" in report._repr_html_()


def test_attention_block_is_counted(files):
    report = tfbench.inspect_model(files["attention"], repeats=1, ablate=False)
    model = keras.saving.load_model(files["attention"])
    assert report.params == model.count_params()
    layers = {c.name: c for c in report.counts.layers}
    t, d, heads, k = 6, 16, 2, 8  # Q, K, V projections; scores and weighted sum; output projection
    assert layers["attention"].macs == 3 * t * d * heads * k + 2 * heads * t * t * k + t * heads * k * d
    assert layers["norm"].mults > 0 and report.uncounted == []
    for mode in ("tf.function", "XLA"):
        assert report.modes.row(mode).max_abs_diff < 1e-4


def test_savedmodel_from_a_tf_module(files):
    report = tfbench.inspect_model(files["savedmodel"], repeats=1, ablate=False)
    assert report.source == "savedmodel" and report.input_shape == (6,)
    assert report.counts is None and report.params == 6 * 3 + 3
    assert report.profiler["by_op"]["MatMul"] == 2 * 6 * 3  # batch 1
    assert report.modes.row("XLA").max_abs_diff < 1e-5
    # the reason bfloat16 did not run: no Keras layers to clone, or (first) a CPU without native bfloat16
    has_bf16 = any(timing.machine_info()["cpu_flags"].get(f) for f in timing.BF16_FLAGS)
    expected = "needs a Keras model" if has_bf16 else "no native bfloat16"
    assert expected in report.modes.bfloat16_skipped, report.modes.bfloat16_skipped
    assert report.profiler["graph"]["macs"] == 6 * 3  # the graph count reaches the SavedModel's function body
    assert report.roofline["rows"][0]["kind"] == "whole model"


def test_h5_gives_the_same_counts_as_keras(files):
    a = tfbench.inspect_model(files["h5"], quick=True)
    b = tfbench.inspect_model(files["keras"], quick=True)
    assert a.source == "h5" and a.params == b.params and a.macs == b.macs and a.macs > 0


def test_free_input_shape_needs_input_shape_and_factories_need_allow_code(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "import keras\n"
        "def convnet():\n"
        "    i = keras.Input((None, None, 3))\n"
        "    return keras.Model(i, keras.layers.Conv2D(4, 3)(i))\n"
        "def broken():\n"
        "    raise RuntimeError('no weights here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="--allow-code"):
        load.load("my_models:convnet")
    with pytest.raises(UserError, match="free dimensions"):
        load.load("my_models:convnet", allow_code=True)
    report = tfbench.inspect_model("my_models:convnet", allow_code=True, input_shape=(10, 10, 3), quick=True)
    assert report.counts.layers[0].output_shape == (8, 8, 4) and report.macs == 8 * 8 * 4 * 27


@pytest.mark.parametrize("name", ["inception_v1", "inception_v1_bn"])
def test_googlenet_and_the_course_variant_reproduce_their_published_counts(name, tmp_path):
    path = tmp_path / f"{name}.keras"
    models.get(name).save(path)
    report = tfbench.inspect_model(path, quick=True)
    assert report.trainable_params == zoo.MODELS[name].params
    assert report.counts.published_params == zoo.MODELS[name].params  # the zoo's entry is found by the file's name


def run_inspect(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(cwd)])}
    return subprocess.run([sys.executable, "-m", "tfbench.inspect", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, files) -> dict[str, tuple[list[str], str]]:
    root = tmp_path_factory.mktemp("bad")
    (root / "folder").mkdir()
    (root / "notes.keras").write_text("not a zip")
    data = files["keras"].read_bytes()
    (root / "cut.keras").write_bytes(data[: len(data) // 2])
    tf.saved_model.save(tf.Module(), str(root / "nosig"))
    i = keras.Input((None, None, 3))
    keras.Model(i, L.Conv2D(2, 3)(i)).save(root / "free.keras")

    @keras.saving.register_keras_serializable(package="test_inspect")
    class Twice(L.Layer):
        def call(self, x):
            return 2 * x

    i = keras.Input((4,))
    keras.Model(i, Twice(name="twice")(i)).save(root / "custom.keras")
    (root / "user_factories.py").write_text("def broken():\n    raise RuntimeError('no weights here')\n")
    return {
        "missing file": ([str(root / "nothing.keras")], "no such file"),
        "folder that is not a SavedModel": ([str(root / "folder")], "not a SavedModel"),
        "file that is not a Keras archive": ([str(root / "notes.keras")], "not a Keras archive"),
        "truncated .keras": ([str(root / "cut.keras")], "Keras archive"),
        "SavedModel without a signature": ([str(root / "nosig")], "no signature"),
        "no fixed input shape": ([str(root / "free.keras")], "--input-shape"),
        "custom class": ([str(root / "custom.keras")], "'Twice'"),
        "factory that raises": (["user_factories:broken", "--allow-code"], "no weights here"),
        "factory without --allow-code": (["user_factories:broken"], "--allow-code"),
    }, root


SLOW = pytest.mark.slow  # these start TensorFlow in the subprocess (about 10 s each on a busy 2-core machine)
CASES = ["missing file", "folder that is not a SavedModel", "file that is not a Keras archive", "truncated .keras",
         pytest.param("SavedModel without a signature", marks=SLOW), pytest.param("no fixed input shape", marks=SLOW),
         pytest.param("custom class", marks=SLOW), "factory that raises", "factory without --allow-code"]


@pytest.mark.parametrize("case", CASES)
def test_bad_inputs_exit_2_with_one_line(bad_inputs, case, tmp_path):
    cases, root = bad_inputs
    args, expected = cases[case]
    result = run_inspect(*args, "--quick", "--no-progress", "--logdir", str(tmp_path), cwd=root)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert expected in lines[0]
    if case not in ("factory that raises", "factory without --allow-code"):
        assert str(root) in lines[0]  # names the file


@pytest.mark.slow
def test_command_and_library_give_the_same_numbers(files, tmp_path):
    result = run_inspect(str(files["keras"]), "--quick", "--json", "--no-progress", "--logdir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    cli = json.loads(result.stdout)
    api = json.loads(json.dumps(tfbench.inspect_model(files["keras"], quick=True).to_json()))
    for key in ("params", "trainable_params", "macs", "mults", "adds", "neurons"):
        assert cli[key] == api[key], key
    assert cli["counts"]["layers"] == api["counts"]["layers"]


def test_the_other_commands_take_a_model_file(files, tmp_path, capsys):
    from tfbench import complexity, fusion, graphs, roofline

    assert complexity.main([str(files["keras"]), "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert counted["model"] == "small" and counted["totals"]["params"] == tfbench.inspect_model(
        files["keras"], quick=True).trainable_params
    assert counted["profiler"]["total_flops"] > 0
    assert graphs.main(["show", str(files["keras"]), "--logdir", str(tmp_path)]) == 0
    assert "_FusedConv2D" in capsys.readouterr().out
    report = roofline.run_benchmark([f"--models={files['keras']}", "--no-fusion", "--no-forward", "--warmup", "0",
                                     "--repeats", "1", "--matmul-size", "64", "--add-elements", "4096",
                                     "--logdir", str(tmp_path)])
    assert {r["group"] for r in report["rows"]} == {"small"}
    rows = fusion.run_experiments(fusion.parse_args(["--experiments", "3", "--quick", "--repeats", "1",
                                                     "--warmup", "0", "--model", str(files["keras"]),
                                                     "--logdir", str(tmp_path)], "fusion"))
    assert any("small" in (t.extra.get("shape") or "") for t in rows), [t.extra for t in rows]


def test_a_model_in_memory_and_the_lazy_export():
    import subprocess as sp

    model = small_convnet()
    report = tfbench.inspect_model(model, quick=True)
    assert report.params == model.count_params() and report.source == "keras" and report.model == "small"
    assert "small" in repr(report) and "MACs" in repr(report)
    fresh = sp.run([sys.executable, "-c", "import sys, tfbench; print('tensorflow' in sys.modules); "
                    "print(callable(tfbench.inspect_model))"], capture_output=True, text=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    assert fresh.stdout.split() == ["False", "True"], fresh.stderr[-2000:]


class Scale(L.Layer):
    """A layer with a weight and arithmetic but no counting rule: counted from its own graph."""

    def build(self, shape):
        self.gain = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gain


class Cumulative(L.Layer):
    """A running product: an op (Cumprod) the graph counter has no rule for, so the report must name it."""

    def call(self, x):
        return tf.math.cumprod(x, axis=-1) + x


def test_sequence_layers_are_counted_and_an_unknown_op_is_named_by_layer_type():
    keras.utils.set_random_seed(2)
    i = keras.Input((12, 4), name="series")
    x = L.Conv1D(6, 3, name="conv1d")(i)  # 10 x 6 outputs, 3 x 4 products each
    x = L.AveragePooling1D(2, name="avg1d")(x)
    x = L.GroupNormalization(groups=2, name="groupnorm")(x)
    x = Scale(name="scale")(x)
    x = Cumulative(name="cum1")(x)
    x = Cumulative(name="cum2")(x)
    x = L.EinsumDense("btc,cd->btd", output_shape=(5, 3), name="einsum")(x)
    model = keras.Model(i, L.GlobalMaxPooling1D(name="gmp")(x))
    report = tfbench.inspect_model(model, quick=True)
    layers = {c.name: c for c in report.counts.layers}
    assert layers["conv1d"].macs == 10 * 6 * 3 * 4
    assert layers["avg1d"].adds == 5 * 6 * (2 - 1) and layers["avg1d"].mults == 5 * 6
    assert layers["groupnorm"].mults == 3 * 5 * 6
    assert layers["einsum"].macs == 5 * 3 * 6
    assert layers["scale"].counted and layers["scale"].method == "graph" and layers["scale"].mults == 5 * 6
    assert layers["cum1"].adds == 5 * 6 and not layers["cum1"].counted  # the AddV2 counted, the Cumprod named
    assert report.uncounted == ["Cumulative x 2 (ops not counted: Cumprod x 1)"]
    assert report.params == model.count_params()
    assert "UNCOUNTED" in report.sections()["summary"] and "Cumulative x 2" in str(report)
