"""Style transfer: the losses against NumPy and finite differences, the optimisation, the transform net, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfbench import models
from tfbench.data import images
from tfbench.data import weights as weight_files
from tfbench.models import style_losses as sl
from tfbench.models import transform_net as tn
from tfbench.style_transfer import optimise as st
from tfbench.style_transfer import pictures as style_pictures

ROOT = Path(__file__).resolve().parent.parent
SIZE = 32


@pytest.fixture(scope="module")
def extractor() -> sl.FeatureExtractor:
    weights = weight_files.random(0, include_top=False)
    return sl.FeatureExtractor(models.get("vgg19", impl="module", weights=weights.layers, include_top=False))


@pytest.fixture(scope="module")
def pictures() -> tuple[np.ndarray, np.ndarray]:
    return (st.square_image(images.skimage_photo("chelsea"), SIZE),
            st.square_image(images.skimage_photo("immunohistochemistry"), SIZE))


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum((a - b) ** 2) / np.sum(b ** 2))


def test_gram_matrix_equals_numpy() -> None:
    f = np.random.default_rng(0).normal(size=(2, 5, 6, 7)).astype(np.float32)
    expected = np.einsum("nhwc,nhwd->ncd", f.astype(np.float64), f.astype(np.float64)) / 30
    np.testing.assert_allclose(sl.gram_matrix(tf.constant(f)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_losses_equal_numpy(extractor, pictures) -> None:
    content, style = pictures
    target = sl.targets(extractor, tf.constant(content), tf.constant(style))
    image = np.clip(content + np.random.default_rng(1).normal(0, 0.1, content.shape), 0, 1).astype(np.float32)
    terms = st.floats(sl.losses(extractor, tf.constant(image), target))
    feats = {k: v.numpy().astype(np.float64) for k, v in extractor(tf.constant(image)).items()}
    style_feats = {k: v.numpy().astype(np.float64) for k, v in extractor(tf.constant(style)).items()}

    def gram(f: np.ndarray) -> np.ndarray:
        return np.einsum("nhwc,nhwd->ncd", f, f) / (f.shape[1] * f.shape[2])

    assert terms["content"] == pytest.approx(relative(feats["conv4_2"], target.content.numpy()), rel=1e-4)
    expected_style = np.mean([relative(gram(feats[n]), gram(style_feats[n])) for n in sl.STYLE_LAYERS])
    assert terms["style"] == pytest.approx(expected_style, rel=1e-3)
    tv = (np.abs(np.diff(image, axis=1)).sum() + np.abs(np.diff(image, axis=2)).sum()) / image.size
    assert terms["tv"] == pytest.approx(tv, rel=1e-4)
    w = sl.LossWeights()
    assert terms["total"] == pytest.approx(w.content * terms["content"] + w.style * terms["style"] + w.tv * tv,
                                           rel=1e-4)


def test_loss_gradients_equal_finite_differences() -> None:
    rng = np.random.default_rng(2)
    f = tf.constant(rng.normal(size=(1, 3, 3, 4)), tf.float64)
    target = tf.constant(rng.normal(size=(1, 3, 3, 4)), tf.float32)
    grams = {"a": sl.gram_matrix(tf.constant(rng.normal(size=(1, 3, 3, 4)), tf.float32))}
    for fn in (lambda x: sl.content_loss(x, target), lambda x: sl.style_loss({"a": sl.gram_matrix(x)}, grams),
               lambda x: sl.total_variation(x)):
        analytic, numeric = tf.test.compute_gradient(lambda x: tf.cast(fn(tf.cast(x, tf.float32)), tf.float64), [f])
        np.testing.assert_allclose(analytic[0], numeric[0], rtol=2e-3, atol=2e-4)


def test_total_loss_gradient_through_vgg19_matches_a_directional_difference(extractor, pictures) -> None:
    """The tape's gradient w.r.t. the pixels, projected on a random direction, against a central difference.

    In float32 through 13 ReLU layers the difference is only good to a few percent (kinks), so 10%:
    a missing factor or a wrong sign still fails.  TV is left out (its kinks are at the ties of uint8 photos)."""
    content, style = pictures
    target = sl.targets(extractor, tf.constant(content), tf.constant(style))
    image = (0.5 * content + 0.25).astype(np.float32)  # nothing at the [0, 1] bounds
    weights = sl.LossWeights(tv=0.0)
    _, grad = st.make_value_and_grad(extractor, target, weights, "eager")(tf.constant(image))
    direction = np.random.default_rng(3).normal(size=image.shape).astype(np.float32)
    eps = 3e-4

    def total(x: np.ndarray) -> float:
        return float(sl.losses(extractor, tf.constant(x), target, weights)["total"])

    numeric = (total(image + eps * direction) - total(image - eps * direction)) / (2 * eps)
    assert float(np.sum(grad.numpy() * direction)) == pytest.approx(numeric, rel=0.1)


def test_short_adam_run_lowers_the_loss_and_reaches_the_style(extractor, pictures) -> None:
    content, style = pictures
    target = sl.targets(extractor, tf.constant(content), tf.constant(style))
    result = st.run_adam(extractor, target, content, steps=40, mode="function")
    final = st.floats(sl.losses(extractor, tf.constant(result.image), target))
    content_style = st.floats(sl.losses(extractor, tf.constant(content), target))["style"]
    assert final["total"] < result.history[0]["total"] / 2  # at least halved in 40 steps
    assert final["style"] < 0.7 * content_style
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_lbfgs_lowers_the_loss(extractor, pictures) -> None:
    content, style = pictures
    target = sl.targets(extractor, tf.constant(content), tf.constant(style))
    result = st.run_lbfgs(extractor, target, content, steps=8)
    final = st.floats(sl.losses(extractor, tf.constant(result.image), target))
    assert final["total"] < result.history[0]["total"] / 2
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_eager_function_and_xla_steps_agree(extractor, pictures) -> None:
    content, style = pictures
    target = sl.targets(extractor, tf.constant(content), tf.constant(style))
    rows = {r["mode"]: r for r in st.compare_modes(extractor, target, content, steps=1)}
    assert set(rows) == {"eager", "function", "xla"}
    for mode in ("function", "xla"):
        assert rows[mode]["total_loss"] == pytest.approx(rows["eager"]["total_loss"], rel=1e-4)
        assert rows[mode]["max_abs_diff"] < 1e-3


def test_vgg_features_equal_keras_applications_vgg19(extractor, pictures) -> None:
    import keras

    reference = keras.applications.VGG19(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    for name, kernel in extractor.vgg.kernels.items():
        reference.get_layer(f"block{name[4]}_conv{name[6]}").set_weights([kernel.numpy(),
                                                                          extractor.vgg.biases[name].numpy()])
    content = pictures[0]
    x = keras.applications.vgg19.preprocess_input(content * 255.0)
    keras_features = keras.Model(reference.input, reference.get_layer("block5_conv1").output)(x).numpy()
    ours = extractor(tf.constant(content))["conv5_1"].numpy()
    np.testing.assert_allclose(ours, keras_features, rtol=1e-3, atol=1e-3 * float(np.abs(keras_features).max()))


def test_four_instance_norms_agree_and_the_graphs_hold_the_custom_ops(pictures) -> None:
    net = tn.build_transform_net(width=4, residual_blocks=1, seed=3)
    batch = tf.constant(np.concatenate(pictures))
    outputs = {norm: tn.with_norm(net, norm)(batch).numpy() for norm in tn.NORMS}
    for norm in ("cpp", "numpy", "fused"):
        assert np.max(np.abs(outputs[norm] - outputs["tf"])) < 1e-4
    fns = st.norm_functions(net)
    ops = {norm: [op.type for op in fns[norm].get_concrete_function(batch).graph.get_operations()]
           for norm in tn.NORMS}
    assert ops["cpp"].count("PowerDifference") == 7  # 3 down + 2 in the block + 2 up
    assert "PowerDifference" not in ops["tf"] and ops["numpy"].count("PyFuncStateless") == 7
    assert ops["fused"].count("InstanceNorm") == 7 and "PowerDifference" not in ops["fused"]


def test_saved_transform_net_gives_the_same_output(tmp_path, pictures) -> None:
    import keras

    net = tn.build_transform_net(width=4, residual_blocks=1, seed=4)
    batch = np.concatenate(pictures)
    expected = net(batch).numpy()
    net.save(tmp_path / "net.keras")
    net.export(str(tmp_path / "saved"), verbose=False)
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "net.keras")(batch).numpy(), expected, atol=1e-6)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # kept: its variables live as long as it does
    np.testing.assert_allclose(loaded.serve(batch).numpy(), expected, atol=1e-6)


def test_training_resumes_from_its_checkpoint(tmp_path, extractor, pictures) -> None:
    photos = [images.skimage_photo("coffee"), images.skimage_photo("chelsea")]
    style = pictures[1]
    common = dict(batch_size=1, size=SIZE, weights=sl.LossWeights(), checkpoint_every=1)

    straight = tn.build_transform_net(width=4, residual_blocks=1, seed=5)
    run = st.train_transform_net(straight, extractor, style, photos, steps=3, checkpoint_dir=tmp_path / "a", **common)
    assert (run.start_step, run.steps_run) == (0, 3)
    assert run.history[-1]["total"] < run.history[0]["total"]

    first = tn.build_transform_net(width=4, residual_blocks=1, seed=5)
    st.train_transform_net(first, extractor, style, photos, steps=2, checkpoint_dir=tmp_path / "b", **common)
    resumed = tn.build_transform_net(width=4, residual_blocks=1, seed=5)
    run = st.train_transform_net(resumed, extractor, style, photos, steps=3, checkpoint_dir=tmp_path / "b", **common)
    assert (run.start_step, run.steps_run) == (2, 1)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_loss_weight_defaults_in_help_are_the_library_defaults() -> None:

    w = sl.LossWeights()
    assert style_pictures.DEFAULT_WEIGHTS == {"content": w.content, "style": w.style, "tv": w.tv}


# ----------------------------------------------------------------------------- the command


def run_style(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tfbench.style", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def assert_one_line_error(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def test_optimise_runs_through_a_keras_vgg19_weight_file(tmp_path) -> None:
    import keras

    model = keras.applications.VGG19(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "vgg19_notop.weights.h5"
    model.save_weights(path)
    proc = run_style("optimise", "--weights", str(path), "--image-size", str(SIZE), "--steps", "3",
                     "--compare-steps", "0", "--no-progress", "--logdir", str(tmp_path / "logs"))
    assert proc.returncode == 0, proc.stderr
    assert f"VGG19 weights: {path}" in proc.stdout and "seeded random" not in proc.stdout
    (run,) = (tmp_path / "logs" / "style").iterdir()
    assert images.load_pil(run / "result.png").pixels.shape == (SIZE, SIZE, 3)
    assert images.load_pil(run / "content_style_result.png").pixels.shape == (SIZE, 3 * SIZE, 3)


@pytest.mark.parametrize("case", ["missing", "corrupt", "layers", "small", "steps", "net"])
def test_bad_input_is_one_error_line(tmp_path, case) -> None:
    args = ["optimise", "--image-size", str(SIZE), "--steps", "1", "--compare-steps", "0", "--no-progress",
            "--logdir", str(tmp_path / "logs")]
    if case == "missing":
        proc, expected = run_style(*args, "--content", str(tmp_path / "nope.jpg")), ("--content", "no such file")
    elif case == "corrupt":
        (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        proc, expected = run_style(*args, "--style", str(tmp_path / "bad.jpg")), ("bad.jpg", "cannot decode")
    elif case == "layers":
        conv1 = weight_files.random(0, include_top=False).layers["conv1_1"]
        path = weight_files.save(tmp_path / "partial.npz", {"conv1_1": conv1})
        proc, expected = run_style(*args, "--weights", str(path)), ("partial.npz", "conv1_2 is missing")
    elif case == "net":
        photo = tmp_path / "photo.png"
        images.save_jpeg(np.zeros((8, 8, 3), np.uint8), photo)
        proc = run_style("realtime", "--net", str(photo), "--logdir", str(tmp_path / "logs"))
        expected = ("--net", "not a saved transform net")
        assert not (tmp_path / "logs").exists()  # no empty run folder left behind
    elif case == "small":
        proc, expected = run_style(*args, "--image-size", "8"), ("--image-size", "conv5_1")
    else:
        proc, expected = run_style(*args, "--steps", "0"), ("--steps", "at least 1")
    assert_one_line_error(proc, *expected)


def power_difference_nodes(run: Path, tag: str) -> int:
    """PowerDifference nodes in the traced graph of a TensorBoard run, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"tensors": 0})
    acc.Reload()
    metadata = tf.compat.v1.RunMetadata.FromString(acc.Tensors(tag)[0].tensor_proto.string_val[0])
    return max(sum(node.op == "PowerDifference" for node in g.pre_optimization_graph.node)
               for g in metadata.function_graphs)


def test_realtime_trains_saves_and_stylises_a_photo_with_the_saved_net(tmp_path) -> None:
    small = ["--image-size", str(SIZE), "--batch-size", "1", "--width", "4", "--residual-blocks", "1",
             "--infer-size", str(SIZE), "--no-progress"]
    proc = run_style("realtime", "--steps", "2", "--repeats", "1", *small, "--logdir", str(tmp_path / "train"))
    assert proc.returncode == 0, proc.stderr
    assert "PowerDifference C++ op" in proc.stdout and "NumPy via tf.numpy_function" in proc.stdout
    (run,) = (tmp_path / "train" / "style").iterdir()
    assert (run / "saved_model" / "saved_model.pb").exists() and (run / "checkpoints" / "checkpoint").exists()
    assert power_difference_nodes(run / "graph_cpp", "transform_cpp") == 7  # 3 down + 2 in the block + 2 up
    photo = tmp_path / "photo.png"
    photo.write_bytes((run / "stylised.png").read_bytes())
    proc = run_style("realtime", "--net", str(run / "transform_net.keras"), "--image", str(photo), *small,
                     "--logdir", str(tmp_path / "use"))
    assert proc.returncode == 0, proc.stderr
    (used,) = (tmp_path / "use" / "style").iterdir()
    assert images.load_pil(used / "stylised.png").pixels.shape == (SIZE, SIZE, 3)


def test_style_benchmark_writes_its_report(tmp_path) -> None:
    from tfbench.benchmarks import style as style_bench

    report = style_bench.run_benchmark(["--image-size", str(SIZE), "--infer-size", str(SIZE), "--batch-size", "1",
                                        "--repeats", "1", "--no-xla", "--logdir", str(tmp_path)])
    cases = {row["case"] for row in report["rows"]}
    assert {"step ours float32 eager", "step ours float32 function", "step keras.applications float32 function",
            "transform net tf", "transform net cpp", "transform net numpy", "transform net fused",
            "instance norm composite forward+backward", "instance norm fused two_pass forward+backward"} <= cases
    assert "ours / keras.applications, function" in report["ratios"] and Path(report["path"]).exists()
    assert "composite / fused two_pass, forward+backward, the net's norms" in report["ratios"]
    assert {goal["met"] for goal in report["norm_goals"].values()} <= {True, False}
