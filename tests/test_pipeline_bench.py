"""The pipeline benchmark runs on tiny sizes and writes its JSON report (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from tfbench import bench
from tfbench.benchmarks import pipeline as pipeline_bench


def test_pipeline_benchmark_writes_json(tmp_path):
    data = pipeline_bench.run_benchmark(["--images", "6", "--batch-size", "4", "--repeats", "1",
                                         "--logdir", str(tmp_path), "--workdir", str(tmp_path / "work"), "--profile"])
    report = json.loads(Path(data["path"]).read_text())
    assert Path(data["path"]).parent == tmp_path / "bench"
    cases = [row["case"] for row in report["rows"]]
    assert cases == ["a_decode_only", "a1_window_decode_only", "a2_decode_and_resize", "b_pipeline",
                     "b_one_thread_per_batch", "b_per_image", "b_tensorflow_ops", "b_other_decode_path",
                     "b_eigen_normalise", "b_autotune_model", "b_cv2_resize", "b_uint8", "b_parallel_reads",
                     "b_private_threadpool", "p_keras_directory", "p_keras_no_normalise", "p_tf_models_eval",
                     "b_recipe_A-aspect", "b_recipe_A-window-v2", "b_recipe_B", "r1_records", "r2_parse",
                     "r3_window_decode", "k1_read_files", "k2_decode", "e_float32_first_conv",
                     "e_uint8_folded_first_conv", "c_naive_loop", "b_pipeline_2x_images"]
    assert report["recipe"] == "A-window"  # tensorflow/models' eval crop, the default
    for row in report["rows"]:
        assert row["images_per_s"] > 0 and row["images_per_s_per_core"] * report["cores"] == row["images_per_s"]
    assert report["rows"][-1]["images"] == 12  # the second dataset is twice as large
    rates = {row["case"]: row["images_per_s"] for row in report["rows"]}
    assert abs(report["ratios"]["b_over_a"] - rates["b_pipeline"] / rates["a_decode_only"]) < 1e-9
    assert abs(report["ratios"]["b_recipe_B_over_b"] - rates["b_recipe_B"] / rates["b_pipeline"]) < 1e-9
    assert report["targets"]["b_over_c >= 2"] == (report["ratios"]["b_over_c"] >= 2)
    assert abs(report["ratios"]["b_over_keras_peer"] - rates["b_pipeline"] / rates["p_keras_directory"]) < 1e-9
    assert abs(report["ratios"]["b_over_tf_models_peer"] - rates["b_pipeline"] / rates["p_tf_models_eval"]) < 1e-9
    assert report["targets"]["b_over_tf_models_peer >= 1.5"] == (report["ratios"]["b_over_tf_models_peer"] >= 1.5)
    assert report["targets"]["b_over_keras_no_normalise >= 1.1"] == (
        report["ratios"]["b_over_keras_no_normalise"] >= 1.1)
    for row in report["rows"]:  # CPU time per image, median between its p10 and p90
        assert row["cpu_us_per_image_p10"] <= row["cpu_us_per_image"] <= row["cpu_us_per_image_p90"]
    profile = Path(report["profile"])  # --profile: a run for TensorBoard's Profile tab
    assert profile.parent.parent == tmp_path / "pipeline" and list(profile.glob("plugins/profile/*/*.xplane.pb"))
    assert set(report["peak_rss_mib"]) >= {"6", "12"} and report["peak_rss_mib"]["6"] > 50
    assert {"bench", "device", "cpu", "tf_version", "python"} <= set(report)
    assert (tmp_path / "work" / "tfrecords-12" / "manifest.json").exists()
    assert bench.BENCHMARKS["pipeline"][0] == "tfbench.benchmarks.pipeline"


def test_tf_models_peer_gives_the_a_window_v2_recipe_normalised(tmp_path):
    """The peer written from tensorflow/models' logic crops, resizes and normalises like our A-window-v2 recipe."""
    import numpy as np
    import tensorflow as tf

    from tfbench.data import imagenet_val
    from tfbench.data import preprocess as pp

    src = pipeline_bench.make_val_folder(tmp_path / "val", 3)
    out = tmp_path / "records"
    imagenet_val.convert(src, out, num_shards=1, workers=1, progress=False)
    (images, _), = pipeline_bench.tf_models_eval_peer(out, batch_size=3).take(1)
    expected = [pp.tf_decode_recipe(tf.constant(p.read_bytes()), "A-window-v2").numpy() for p in sorted(src.iterdir())]
    expected = (np.stack(expected) - np.float32(pipeline_bench.MEAN_RGB)) / np.float32(pipeline_bench.STDDEV_RGB)
    np.testing.assert_allclose(images.numpy(), expected, rtol=0, atol=1e-5)
    keras_batch = next(iter(pipeline_bench.keras_directory_peer(src, batch_size=3)))
    assert keras_batch.shape == (3, 224, 224, 3) and keras_batch.dtype == tf.float32
