"""Building and loading custom ops, the no-compiler fallback, the graph demo and the benchmark."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tfbench.operators import backend as backend_rule
from tfbench.operators import build
from tfbench.operators import instance_norm as inorm
from tfbench.operators import power_difference as pd
from tfbench.ops import main as ops_main
from tfbench.plumbing import paths
from tfbench.plumbing.errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def library() -> Path:
    """The real library, compiled once per TensorFlow version and source hash (cached)."""
    pd.load_library()
    return build.plan("power_difference").library


def test_the_library_is_cached_per_tensorflow_version_and_source(library: Path, capsys: pytest.CaptureFixture) -> None:
    assert library.exists() and library.parent.parent == paths.cache_root() / "ops" / "power_difference"
    assert library.parent.name.startswith(f"tf{tf.__version__}-") and library.name == "power_difference.so"
    before = library.stat().st_mtime_ns
    assert build.build("power_difference") == library  # a cache hit compiles nothing
    assert library.stat().st_mtime_ns == before
    assert "compiling" not in capsys.readouterr().err
    flags = build.plan("power_difference").flags
    assert "-std=c++17" in flags and any(f.startswith("-I") and f.endswith("include") for f in flags)


def _copy_of_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the shipped custom_ops/ at a copy in tmp_path; returns the copy's power_difference.cc."""
    shutil.copytree(paths.shipped("custom_ops", "power_difference"), tmp_path / "power_difference",
                    ignore=shutil.ignore_patterns("build"))
    monkeypatch.setattr(paths, "shipped", lambda folder, *parts: tmp_path.joinpath(*parts))
    return tmp_path / "power_difference" / "power_difference.cc"


def test_a_changed_source_gets_a_new_cache_folder(library: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    source = _copy_of_the_sources(tmp_path, monkeypatch)
    same = build.plan("power_difference")
    assert same.library == library  # same sources, flags and TF: same folder
    source.write_text(source.read_text() + "\n// changed\n")
    changed = build.plan("power_difference").library
    assert changed.parent != library.parent and changed.parent.parent == library.parent.parent
    assert changed.parent.name.startswith(f"tf{tf.__version__}-")


def test_changed_compile_flags_get_a_new_cache_folder(library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "BASE_FLAGS", (*build.BASE_FLAGS, "-DTFBENCH_PROBE=1"))
    flagged = build.plan("power_difference")
    assert "-DTFBENCH_PROBE=1" in flagged.flags and flagged.library.parent != library.parent
    assert flagged.library.parent.parent == library.parent.parent


def test_the_cache_folder_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.ENV_CACHE, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert paths.cache_root() == tmp_path / "home" / ".cache" / "tfbench"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == tmp_path / "xdg" / "tfbench"
    monkeypatch.setenv(paths.ENV_CACHE, str(tmp_path / "mine"))
    assert paths.cache_root() == tmp_path / "mine"
    assert build.plan("power_difference").library.is_relative_to(tmp_path / "mine" / "ops" / "power_difference")


def test_an_unwritable_cache_is_one_error_line_naming_the_folder_and_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")  # works as root too, where permission bits do not stop a write
    env = {**os.environ, paths.ENV_CACHE: str(blocker / "cache")}
    result = subprocess.run([sys.executable, "-m", "tfbench.ops", "build", "--op", "power_difference"], env=env,
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the tfbench cache folder "), lines
    assert str(blocker / "cache") in lines[0] and "TFBENCH_CACHE" in lines[0]
    assert blocker.read_text() == "not a folder\n"


def test_no_compiler_is_a_clear_error_and_auto_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    monkeypatch.setenv(paths.ENV_CACHE, str(tmp_path / "cache"))  # an empty cache: must compile
    with pytest.raises(build.BuildError, match="no C\\+\\+ compiler found.*no-such-g\\+\\+"):
        ops_main(["build"])
    monkeypatch.setattr(build, "_BY_NAME", {})  # as in a fresh process
    monkeypatch.setattr(backend_rule, "fallback_reasons", {})
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found.*fallback"):
        assert pd.resolve_backend("auto") == "fallback"
    z = pd.power_difference([3.0, 4.0], [1.0, 1.0], 2.0)  # everything else still runs
    np.testing.assert_allclose(z, [4.0, 9.0])
    with pytest.raises(build.BuildError):
        pd.resolve_backend("cpp")


def _fake_compiler(tmp_path: Path, library: Path) -> tuple[Path, Path]:
    """A 'compiler' that takes 1.5 s, logs each run and writes a copy of the real library to -o."""
    calls = tmp_path / "calls.log"
    script = tmp_path / "fake-g++"
    script.write_text(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "fake-g++ 1.0"; exit 0; fi
echo run >> {calls}
out=""; prev=""
for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
head -c 1000 {library} > "$out"; sleep 1.5; cat {library} > "$out"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, calls


def test_concurrent_builds_compile_once_and_never_expose_a_partial_file(library: Path, tmp_path: Path) -> None:
    compiler, calls = _fake_compiler(tmp_path, library)
    cache = tmp_path / "cache"
    target = build.plan("power_difference", compiler=str(compiler), cache=cache).library
    stale = target.parent.with_name(f"tf{tf.__version__}-000000000000")  # other sources or flags
    other_tf = target.parent.with_name("tf0.0.0-000000000000")  # another TensorFlow's build
    for folder in (stale, other_tf):
        folder.mkdir(parents=True)
        (folder / "power_difference.so").write_bytes(b"old")
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        build.build("power_difference", compiler=str(compiler), cache=cache, quiet=True))) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.7)  # the compile is running now
    assert not target.exists(), "the library appeared before the compiler finished"
    for t in threads:
        t.join()
    assert results == [target] * 3
    assert calls.read_text().count("run") == 1
    assert target.read_bytes() == library.read_bytes()
    assert not list(target.parent.glob("*.partial"))
    assert (stale / "power_difference.so").exists() and (other_tf / "power_difference.so").exists()  # side by side


def test_two_processes_building_at_once_produce_one_good_library(library: Path, tmp_path: Path) -> None:
    compiler, calls = _fake_compiler(tmp_path, library)
    cache = tmp_path / "cache"
    code = ("import sys; from tfbench.operators import build; "
            "print(build.build('power_difference', compiler=sys.argv[1], cache=sys.argv[2], quiet=True))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(compiler), str(cache)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    built = {out.strip() for out, _ in outputs}
    assert len(built) == 1 and calls.read_text().count("run") == 1
    target = Path(built.pop())
    assert target.parent.parent == cache / "ops" / "power_difference"
    assert target.read_bytes() == library.read_bytes() and not list(target.parent.glob("*.partial"))


def test_a_compile_error_names_the_file_and_keeps_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "broken.cc").write_text("this is not C++;\n")
    monkeypatch.setattr(paths, "shipped", lambda folder, *parts: tmp_path.joinpath(*parts))
    cache = tmp_path / "cache"
    with pytest.raises(build.BuildError, match="compiling custom_ops/broken failed.*error") as err:
        build.build("broken", cache=cache, quiet=True)
    assert "full log" in str(err.value)
    assert list(cache.rglob("broken.log")) and not list(cache.rglob("*.so"))
    with pytest.raises(UserError, match="no custom op 'nope'.*known ops: broken"):
        build.build("nope")


def test_build_cli_prints_the_cached_library(library: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tfbench.ops", "build", "--op", "power_difference"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(library)
    every = subprocess.run([sys.executable, "-m", "tfbench.ops", "build"], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=300)  # without --op: every folder of custom_ops/, in order
    assert every.returncode == 0, every.stderr[-2000:]
    built = every.stdout.split()
    built_names = [Path(p).stem for p in built]
    assert built_names == build.known_ops()  # one library per op
    expected = {"conv2d", "decode_resize_normalise", "instance_norm", "power_difference", "resize_normalise"}
    assert expected <= set(built_names)
    assert built[built_names.index("power_difference")] == str(library) and all(Path(p).exists() for p in built)


@pytest.mark.parametrize("backend", ["cpp", "fallback"])
def test_instance_norm_matches_keras_group_normalization(library: Path, backend: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(2, 5, 6, 4)).astype(np.float32)
    gamma, beta = rng.normal(1, 0.2, size=4).astype(np.float32), rng.normal(0, 0.2, size=4).astype(np.float32)
    layer = keras.layers.GroupNormalization(groups=-1)  # one group per channel: instance normalisation
    layer.build(x.shape)
    layer.set_weights([gamma, beta])
    want = layer(x).numpy()
    got = inorm.instance_norm(tf.constant(x), gamma, beta, epsilon=layer.epsilon, backend=backend).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_the_residual_block_trains_through_either_backend_identically(library: Path) -> None:
    x = tf.constant(np.random.default_rng(1).uniform(0, 1, size=(1, 8, 8, 3)).astype(np.float32))
    target = tf.image.flip_left_right(x)
    losses, weights = {}, {}
    for backend in ("cpp", "fallback"):
        block = inorm.ResidualBlock.create(channels=3, seed=0)
        step = inorm.make_train_step(block, backend=backend)
        losses[backend] = [float(step(x, target)) for _ in range(3)]
        weights[backend] = [v.numpy() for v in block.variables]
    assert losses["cpp"][-1] < losses["cpp"][0]
    np.testing.assert_allclose(losses["cpp"], losses["fallback"], rtol=1e-5)
    for a, b in zip(weights["cpp"], weights["fallback"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _graph_ops(run: Path) -> set[str]:
    accumulator = EventAccumulator(str(run))
    accumulator.Reload()
    return {node.op for node in accumulator.Graph().node}


@pytest.mark.parametrize("backend", ["cpp", "fallback"])
def test_demo_writes_the_custom_node_to_tensorboard(library: Path, backend: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    assert ops_main(["demo", "--backend", backend, "--logdir", str(tmp_path), "--image-size", "16",
                     "--steps", "2"]) == 0
    run = next((tmp_path / "ops").iterdir())
    pre, post = _graph_ops(run / "forward_pre_grappler"), _graph_ops(run / "forward_post_grappler")
    if backend == "cpp":
        assert "PowerDifference" in pre and "PowerDifference" in post
        assert "PowerDifference nodes before grappler 2, after 2" in capsys.readouterr().out
    else:
        assert "PowerDifference" not in pre and "Pow" in pre
    assert (run / "train_step").is_dir() and (run / "images").is_dir()


def test_benchmark_writes_json_with_both_thread_counts(library: Path, tmp_path: Path) -> None:
    from tfbench.benchmarks.ops import run_benchmark

    report = run_benchmark(["--sizes", "2000", "--repeats", "1", "--warmup", "0", "--logdir", str(tmp_path)])
    data = json.loads(Path(report["path"]).read_text())
    assert Path(report["path"]).parent == tmp_path / "bench"
    rows = data["rows"]
    assert {r["threads"] for r in rows} == {1, 2}
    assert {r["impl"] for r in rows} == {"PowerDifference (cpp)", "composite tf.pow(x - y, p)",
                                         "NumPy np.power(x - y, p)"}
    assert {r["mode"] for r in rows} == {"forward", "forward+backward"}
    assert {r["broadcast"] for r in rows} == {"none", "rows"}
    assert all(r["median_ms"] > 0 for r in rows)
    assert "cpp/composite forward n=2e+03 bcast=none t=1" in data["ratios"]
    assert "speedup 2 threads, cpp forward+backward n=2e+03 bcast=rows" in data["ratios"]
    assert "cpu time cpp/composite forward n=2e+03 bcast=rows t=2" in data["ratios"]
    assert all(r["cpu_ms"] >= 0 and r["cpu_per_wall"] >= 0 and "busy_threads" in r for r in rows)


def test_busy_threads_counts_threads_that_did_real_work() -> None:
    from tfbench.benchmarks.ops import busy_threads

    assert busy_threads({"1": 10, "2": 5}, {"1": 110, "2": 95, "3": 2}) == 2
    assert busy_threads({"1": 10, "2": 5}, {"1": 110, "2": 15}) == 1
    assert busy_threads({"1": 10}, {"1": 10}) is None


def test_bad_benchmark_flags_are_user_errors() -> None:
    from tfbench.benchmarks.ops import run_benchmark

    with pytest.raises(UserError, match="--sizes"):
        run_benchmark(["--sizes", "big"])
    with pytest.raises(UserError, match="--threads"):
        run_benchmark(["--threads", "0"])


def test_a_library_that_does_not_load_is_a_build_error(tmp_path: Path) -> None:
    script = tmp_path / "garbage-g++"
    script.write_text('#!/bin/sh\n[ "$1" = "--version" ] && { echo garbage 1.0; exit 0; }\n'
                      'prev=""; for a in "$@"; do '
                      '[ "$prev" = "-o" ] && echo "not an ELF file" > "$a"; prev="$a"; done\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(build.BuildError, match="loading .* failed.*--force"):
        build.load("power_difference", compiler=str(script), cache=tmp_path / "cache", quiet=True)
