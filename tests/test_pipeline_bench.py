"""The pipeline benchmark runs on tiny sizes and writes its JSON report (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from tfbench import bench, pipeline_bench


def test_pipeline_benchmark_writes_json(tmp_path):
    data = pipeline_bench.run_benchmark(["--images", "6", "--batch-size", "4", "--repeats", "1",
                                         "--logdir", str(tmp_path), "--workdir", str(tmp_path / "work")])
    report = json.loads(Path(data["path"]).read_text())
    assert Path(data["path"]).parent == tmp_path / "bench"
    cases = [row["case"] for row in report["rows"]]
    assert cases == ["a_decode_only", "a1_window_decode_only", "a2_decode_and_resize", "b_pipeline",
                     "b_tensorflow_ops", "b_other_decode_path", "b_eigen_normalise", "b_autotune_model", "b_cv2_resize",
                     "b_recipe_A-aspect", "b_recipe_B", "c_naive_loop", "b_pipeline_2x_images"]
    assert report["recipe"] == "A-window"  # tensorflow/models' eval crop, the default
    for row in report["rows"]:
        assert row["images_per_s"] > 0 and row["images_per_s_per_core"] * report["cores"] == row["images_per_s"]
    assert report["rows"][-1]["images"] == 12  # the second dataset is twice as large
    rates = {row["case"]: row["images_per_s"] for row in report["rows"]}
    assert abs(report["ratios"]["b_over_a"] - rates["b_pipeline"] / rates["a_decode_only"]) < 1e-9
    assert abs(report["ratios"]["b_recipe_B_over_b"] - rates["b_recipe_B"] / rates["b_pipeline"]) < 1e-9
    assert report["targets"]["b_over_c >= 2"] == (report["ratios"]["b_over_c"] >= 2)
    assert set(report["peak_rss_mib"]) >= {"6", "12"} and report["peak_rss_mib"]["6"] > 50
    assert {"bench", "device", "cpu", "tf_version", "python"} <= set(report)
    assert (tmp_path / "work" / "tfrecords-12" / "manifest.json").exists()
    assert bench.BENCHMARKS["pipeline"][0] == "tfbench.pipeline_bench"
