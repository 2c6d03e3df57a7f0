"""The timing harness and the matmul benchmark: JSON shape and correctness, never wall-clock limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfbench import bench
from tfbench.errors import UserError


def test_measure_excludes_warmup_and_blocks_on_results():
    calls = []

    def fn():
        calls.append(1)
        return tf.constant([1.0, 2.0])

    timing = bench.measure("case", fn, warmup=3, repeats=4, size=7)
    assert len(calls) == 7
    assert timing.repeats == 4 and timing.p10_ms <= timing.median_ms <= timing.p90_ms
    assert timing.row()["size"] == 7


def test_block_converts_nested_tensors_to_numpy():
    out = bench.block({"a": tf.ones([2]), "b": (tf.zeros([1]), 3)})
    assert isinstance(out["a"], np.ndarray) and isinstance(out["b"][0], np.ndarray) and out["b"][1] == 3


def test_measure_rejects_zero_repeats():
    with pytest.raises(UserError):
        bench.measure("x", lambda: 1, repeats=0)


def test_report_writes_the_documented_schema(tmp_path):
    data = bench.report("demo", [bench.measure("c", lambda: 1, warmup=0, repeats=2)], {"r": 2.0},
                        logdir=tmp_path, quiet=True)
    (path,) = (tmp_path / "bench").glob("demo-*.json")
    saved = json.loads(path.read_text())
    assert {"bench", "device", "cpu", "tf_version", "python", "rows", "ratios"} <= set(saved)
    assert saved["rows"][0]["case"] == "c" and saved["ratios"] == {"r": 2.0}
    assert saved["tf_version"] == tf.__version__ and data["path"] == str(path)


def test_matmul_benchmark_runs_and_computes_flops(tmp_path):
    from tfbench import matmul

    data = matmul.run_benchmark(["--sizes", "64", "--chain-size", "16", "--repeats", "2", "--warmup", "1",
                                 "--logdir", str(tmp_path)])
    cpu_rows = [r for r in data["rows"] if "CPU" in r["device"]]
    assert {r["mode"] for r in cpu_rows} == {"eager", "tf.function"}
    for row in cpu_rows:
        expected = (2 * 64**3 if row["size"] == 64 else 10 * 2 * 16**3) / (row["median_ms"] * 1e-3) / 1e9
        assert row["gflops"] == pytest.approx(expected)
    assert any("tf.function speedup" in k for k in data["ratios"])


def test_chain_case_is_a_real_matmul_chain():
    from tfbench.matmul import _chain

    a = np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)
    b = np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32) / 8
    expected = a
    for _ in range(10):
        expected = np.tanh(expected @ b)
    np.testing.assert_allclose(_chain(tf.constant(a), tf.constant(b)).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_cli_dispatch_unknown_name_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["no-such-bench"])
    assert exc.value.code == 2


def test_atomic_output_leaves_nothing_on_failure_and_normal_permissions(tmp_path):
    import os

    from tfbench.files import atomic_output, write_json

    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
    write_json(target, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
