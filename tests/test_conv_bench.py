"""The convolution benchmark (python -m tfbench.conv), its counting, and the conv2d fuzz command."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfbench.inspection import conv_algorithms as conv_bench
from tfbench.inspection.conv_algorithms import ConvCase
from tfbench.plumbing.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=600)


def test_winograd_does_two_and_a_quarter_times_fewer_multiplications_on_even_planes() -> None:
    case = ConvCase("vgg19", ("block3_conv2",), (1, 56, 56, 256), (3, 3, 256, 256), (1, 1), "SAME")
    direct = case.direct_multiplications()
    assert direct == 56 * 56 * 256 * 256 * 9 and case.flops == 2 * direct
    winograd = conv_bench.multiplications(case, "winograd")
    assert winograd == 28 * 28 * 16 * 256 * 256 + 14 * 256 * 256  # tiles x 16 x channel pairs + filter transform
    assert direct / winograd == pytest.approx(conv_bench.WINOGRAD_SAVING, rel=0.01)
    odd = ConvCase("m", ("c",), (1, 7, 7, 8), (3, 3, 8, 8), (1, 1), "SAME")  # 4x4 tiles cover 7x7: less saved
    assert odd.direct_multiplications() / conv_bench.multiplications(odd, "winograd") < 2.25 * 49 / 64 + 0.01
    assert conv_bench.multiplications(case, "tile_ic") == direct


def test_a_strided_case_knows_its_output_and_which_algorithms_apply() -> None:
    case = ConvCase("m", ("stem",), (2, 23, 19, 3), (7, 7, 3, 20), (2, 2), "SAME")
    assert case.output_hw == (12, 10)
    assert case.bytes == 4 * (2 * 23 * 19 * 3 + 7 * 7 * 3 * 20 + 2 * 12 * 10 * 20)
    assert not case.applies("winograd") and case.applies("loops")
    assert case.label == "stem b2 23x19x3->20 7x7/2 SAME"


def test_the_models_conv_shapes_come_through_the_one_loader() -> None:
    cases, notes = conv_bench.load_cases(["lenet5", "vgg19"], [1, 8], input_shape=None)
    lenet = [c for c in cases if c.model == "lenet5"]
    assert [(c.layers, c.input_shape, c.filter_shape, c.padding) for c in lenet if c.batch == 1] == [
        (("c1",), (1, 32, 32, 1), (5, 5, 1, 6), "VALID"), (("c3",), (1, 14, 14, 6), (5, 5, 6, 16), "VALID")]
    vgg = [c for c in cases if c.model == "vgg19" and c.batch == 8]
    assert sum(len(c.layers) for c in vgg) == 16 and len(vgg) == 9  # 16 layers, 9 distinct shapes
    assert vgg[-1].layers == ("block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4")
    assert vgg[-1].input_shape == (8, 14, 14, 512) and notes == []


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    logdir = tmp_path_factory.mktemp("logs")
    result = _run("tfbench.conv", "lenet5", "--batch-sizes", "1,2", "--repeats", "2", "--warmup", "0",
                  "--logdir", str(logdir))
    assert result.returncode == 0, result.stderr[-2000:]
    path = next((logdir / "bench").glob("conv-*.json"))
    return {**json.loads(path.read_text()), "stdout": result.stdout, "logdir": logdir}


def test_the_command_times_every_algorithm_against_tensorflow(report: dict) -> None:
    rows = report["rows"]
    cases = {r["case"] for r in rows}
    assert len(cases) == 4  # c1 and c3 at batch 1 and 2
    for case in cases:
        algorithms = {r["algorithm"] for r in rows if r["case"] == case}
        assert {"loops", "tile_oc", "tile_plane", "tile_ic", "im2col"} <= algorithms
        assert "winograd" not in algorithms  # 5x5 filters
        assert any(a.startswith("tf.nn.conv2d (") and "child" not in a for a in algorithms)
        assert "tf.nn.conv2d (Eigen, child)" in algorithms
    for r in rows:
        assert r["median_ms"] > 0 and r["gflops"] == pytest.approx(2 * r["multiplications"] / (r["median_ms"] * 1e6),
                                                                    rel=1e-6)
        assert math.isclose(r["of_matmul_peak"], r["gflops"] / r["peak_gflops_same_rounds"])
    assert report["eigen_child"]["onednn"] is False  # the child really ran without oneDNN
    assert "L1d" in report["schedules"]["c1 b1 32x32x1->6 5x5/1 VALID"][0]
    assert any(key.startswith("tile_oc/loops") for key in report["ratios"])
    assert report["cache_misses"]  # "ok" where perf counts, else the reason it cannot
    assert "faster than the loop nest" in report["stdout"]


def test_the_command_writes_a_tensorboard_run_with_the_roofline(report: dict) -> None:
    run = Path(report["run_dir"])
    assert run.parent == report["logdir"] / "conv" and any(run.glob("events.out.tfevents.*"))
    assert Path(report["png"]).stat().st_size > 10_000


def test_a_missing_model_file_is_one_error_line() -> None:
    result = _run("tfbench.conv", "no_such_model.keras", "--no-eigen")
    assert result.returncode == 2, result.stderr[-1000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "no_such_model.keras: no such file" in last


@pytest.mark.parametrize("args,words", [(["--algorithms", "fft"], "'fft' is not one of loops"),
                                        (["--batch-sizes", "0"], "--batch-sizes must be at least 1"),
                                        (["--batch-sizes", "1,x"], "whole numbers")])
def test_bad_flags_are_user_errors(args: list, words: str) -> None:
    from tfbench import conv as command

    with pytest.raises(UserError, match=words):
        command.main([*args, "--no-eigen"])


def test_the_fuzz_command_runs_conv2d_on_both_backends_without_a_problem(tmp_path: Path) -> None:
    out = tmp_path / "fuzz.json"
    result = _run("tfbench.ops", "fuzz", "--op", "conv2d", "--cases", "150", "--json", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    summary = json.loads(out.read_text())
    for backend in ("cpp", "fallback"):
        counts = summary["backends"][backend]
        assert counts["problems"] == 0 and counts["match"] > 30 and counts["error"] > 20
