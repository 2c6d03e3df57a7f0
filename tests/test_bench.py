"""The timing harness and the matmul benchmark: JSON shape and correctness, never wall-clock limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfbench import bench, timing
from tfbench.plumbing.errors import UserError


def test_measure_excludes_warmup_and_blocks_on_results():
    calls = []

    def fn():
        calls.append(1)
        return tf.constant([1.0, 2.0])

    result = timing.measure("case", fn, warmup=3, repeats=4, size=7)
    assert len(calls) == 7
    assert result.repeats == 4 and result.p10_ms <= result.median_ms <= result.p90_ms
    assert result.row()["size"] == 7


def test_block_converts_nested_tensors_to_numpy():
    out = timing.block({"a": tf.ones([2]), "b": (tf.zeros([1]), 3)})
    assert isinstance(out["a"], np.ndarray) and isinstance(out["b"][0], np.ndarray) and out["b"][1] == 3


def test_measure_rejects_zero_repeats():
    with pytest.raises(UserError):
        timing.measure("x", lambda: 1, repeats=0)


def test_report_writes_the_documented_schema(tmp_path):
    data = timing.report("demo", [timing.measure("c", lambda: 1, warmup=0, repeats=2)], {"r": 2.0},
                        logdir=tmp_path, quiet=True)
    (path,) = (tmp_path / "bench").glob("demo-*.json")
    saved = json.loads(path.read_text())
    assert {"bench", "device", "cpu", "cpu_flags", "onednn", "onednn_reason", "intra_op_threads", "inter_op_threads",
            "tf_version", "keras_version", "python", "rows", "ratios"} <= set(saved)
    assert saved["rows"][0]["case"] == "c" and saved["ratios"] == {"r": 2.0}
    assert saved["tf_version"] == tf.__version__ and data["path"] == str(path)


def test_matmul_benchmark_runs_and_computes_flops(tmp_path):
    from tfbench.benchmarks import matmul

    data = matmul.run_benchmark(["--sizes", "64", "--chain-size", "16", "--repeats", "2", "--warmup", "1",
                                 "--logdir", str(tmp_path)])
    cpu_rows = [r for r in data["rows"] if "CPU" in r["device"]]
    assert {r["mode"] for r in cpu_rows} == {"eager", "tf.function"}
    for row in cpu_rows:
        expected = (2 * 64**3 if row["size"] == 64 else 10 * 2 * 16**3) / (row["median_ms"] * 1e-3) / 1e9
        assert row["gflops"] == pytest.approx(expected)
    assert any("tf.function speedup" in k for k in data["ratios"])


def test_chain_case_is_a_real_matmul_chain():
    from tfbench.benchmarks.matmul import _chain

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

    from tfbench.plumbing.files import atomic_output, write_json

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


def test_machine_info_fields_agree_with_proc_cpuinfo():
    from pathlib import Path

    info = timing.machine_info()
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set()
    model = ""
    for line in text.splitlines():
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
    assert set(info["cpu_flags"]) == set(timing.KERNEL_FLAGS)
    assert info["cpu_flags"] == {f: f in flags for f in timing.KERNEL_FLAGS}
    if model:
        assert info["cpu"] == model
    from tensorflow.python.util import _pywrap_util_port

    assert info["onednn"] is bool(_pywrap_util_port.IsMklEnabled())
    assert info["intra_op_threads"] >= 1 and info["inter_op_threads"] >= 1
    import keras

    assert info["tf_version"] == tf.__version__ and info["keras_version"] == keras.__version__
    header = timing.machine_header(info)
    assert info["cpu"] in header and ("oneDNN on" if info["onednn"] else "oneDNN off") in header
    has_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert ("no bfloat16 speed-up expected" in info["bf16_note"]) is (not has_bf16)


def test_onednn_rule_follows_tensorflow_default_and_the_environment_variable():
    assert timing.onednn_state({"avx2", "fma"}, env="") == (False, timing.onednn_state({"avx2"}, env="")[1])
    assert timing.onednn_state({"avx2", "avx512_bf16"}, env="")[0] is True
    assert "avx512_vnni" in timing.onednn_state({"avx512_vnni"}, env="")[1]
    assert timing.onednn_state({"avx512_bf16"}, env="0") == (False, "TF_ENABLE_ONEDNN_OPTS=0")
    assert timing.onednn_state({"avx2"}, env="1") == (True, "TF_ENABLE_ONEDNN_OPTS=1")
    assert "no bfloat16 speed-up expected" in timing.bf16_note({"avx2", "avx512f"})
    assert "amx_bf16" in timing.bf16_note({"amx_bf16"})
    # where bfloat16 pays is said, and where it does not, so a measured slow-down beside it is no contradiction
    assert "VGG19 at 224x224, batch 8" in timing.bf16_note({"avx512_bf16"})
    assert "small layers (LeNet-5, VGG19 at 32x32) are not faster" in timing.bf16_note({"avx512_bf16"})


def test_cpuinfo_parser_reads_model_and_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 fma avx512_bf16\n\n"
                    "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    assert timing.cpuinfo(path) == ("Test CPU 9000", {"fpu", "avx2", "fma", "avx512_bf16"})
    assert timing.cpuinfo(tmp_path / "missing") == ("", set())
