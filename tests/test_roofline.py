"""The roofline command: counts equal tfbench.complexity's, a tiny run writes its PNG, TensorBoard cards and JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfbench import models, roofline
from tfbench.inspection import roofline as roofline_lib
from tfbench.models import counting
from tfbench.plumbing.errors import UserError


def test_layer_flops_are_complexitys_counts_and_bytes_follow_the_shapes():
    model = models.get("lenet5")
    batch = 3
    points = roofline_lib.layer_points("lenet5", model, batch, warmup=0, repeats=1)
    counts = counting.count_model(models.get("lenet5"), "lenet5")
    assert [p.name for p in points] == [c.name for c in counts.layers]
    for point, count in zip(points, counts.layers):
        assert point.flops == batch * (count.mults + count.adds)
        assert point.median_ms > 0
    c1 = next(p for p in points if p.name == "c1")  # 32x32x1 in, 28x28x6 out, 5x5x1x6 + 6 weights
    assert c1.bytes == 4 * (batch * 32 * 32 + batch * 28 * 28 * 6 + 5 * 5 * 6 + 6)
    assert sum(p.flops for p in points) == batch * (counts.total("mults") + counts.total("adds"))


def test_roofline_bound_and_ridge():
    compute = roofline_lib.Point("x", "conv", "Conv2D", flops=10**9, bytes=10**6, median_ms=10.0)
    memory = roofline_lib.Point("x", "relu", "ReLU", flops=10**6, bytes=10**7, median_ms=1.0)
    peak, bandwidth = 200.0, 20.0  # ridge at 10 FLOP/byte
    row_c, row_m = compute.row(peak, bandwidth), memory.row(peak, bandwidth)
    assert row_c["intensity"] == 1000 and not row_c["memory_bound"] and row_c["bound_gflops"] == peak
    assert row_m["intensity"] == pytest.approx(0.1) and row_m["memory_bound"]
    assert row_m["bound_gflops"] == pytest.approx(2.0) and row_m["gflops"] == pytest.approx(1.0)
    assert row_c["gflops"] == pytest.approx(100.0) and row_c["of_bound"] == pytest.approx(0.5)


def test_tiny_run_writes_png_tensorboard_image_and_text_and_json(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    report = roofline.run_benchmark(["--models", "lenet5,vgg19", "--image-size", "32", "--batch-size", "2",
                                     "--lenet-batch", "4", "--matmul-size", "64", "--add-elements", "4096",
                                     "--warmup", "0", "--repeats", "1", "--logdir", str(tmp_path)])
    data = json.loads(open(report["path"]).read())
    assert data["bench"] == "roofline" and "cpu_flags" in data and data["peaks"]["float32_gflops"] > 0
    groups = {r["group"] for r in data["rows"]}
    assert groups == {"lenet5", "vgg19", "fusion", "model"}
    fusion = {r["name"]: r for r in data["rows"] if r["group"] == "fusion"}
    # fusion keeps the FLOPs and removes bytes: intensity goes up
    assert fusion["conv+bias+relu fused"]["flops"] == fusion["conv+bias+relu unfused"]["flops"]
    assert fusion["10 elementwise ops XLA"]["intensity"] > fusion["10 elementwise ops"]["intensity"]
    assert any("ridge point" in line for line in data["summary"])
    png = tmp_path / "roofline"
    (run_dir,) = [d for d in png.iterdir() if d.is_dir()]
    assert (run_dir / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "roofline" in tags["tensors"] or "roofline" in tags["images"]
    assert {"roofline/table", "roofline/summary"} <= set(tags["tensors"])
    table = acc.Tensors("roofline/table")[0].tensor_proto.string_val[0].decode()
    assert "| group | layer |" in table and "c1" in table
    image = np.frombuffer(acc.Tensors("roofline")[0].tensor_proto.string_val[2], np.uint8)
    assert image[:4].tobytes() == b"\x89PNG"


def test_bad_flags_are_user_errors():
    with pytest.raises(UserError, match="--models"):
        roofline.parse_args(["--models", "alexnet"])
    with pytest.raises(UserError, match="multiple of 32"):
        roofline.parse_args(["--image-size", "100"])
