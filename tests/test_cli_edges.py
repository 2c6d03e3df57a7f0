"""Every command as a new user meets it: instant ``--help`` with defaults, one-line errors, quiet start-up.

Each case runs the real command in a subprocess and checks the exit code, that the error is one
line, and that no traceback is printed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import tfbench
from tfbench.__main__ import EXPERIMENTS
from tfbench.bench import BENCHMARKS
from tfbench.plumbing.errors import UserError
from tfbench.training import lenet as lenet_lib
from tfbench.training import mixed_precision as mp_lib
from tfbench.training import sparsity as sparsity_lib

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["vgg_graph", "lenet", "imagenet", "images", "mnist", "grads", "graphs", "fusion", "mixed_precision",
            "sparsity", "complexity", "ops", "distributed", "bench", "basics", "classic",
            "imagenet convert", "imagenet eval", "graphs show", "distributed train", "distributed consume",
            "ops demo", "grads check", "inspect"]
BENCH_NAMES = list(BENCHMARKS)


def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def assert_one_line_error(proc: subprocess.CompletedProcess, *expected: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- --help: instant, defaults shown

HELP_SCRIPT = """
import contextlib, io, json, runpy, sys
results = {}
for command in json.loads(sys.argv[1]):
    module, *rest = command.split()
    sys.argv = [module, *rest, "--help"]
    out = io.StringIO()
    code = None
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module(f"tfbench.{module}", run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            code = stop.code
    results[command] = {"code": code, "out": out.getvalue(),
                        "tensorflow": any(m == "tensorflow" or m.startswith(("tensorflow.", "keras"))
                                          for m in sys.modules)}
print(json.dumps(results))
"""
HELP_COMMANDS = COMMANDS + [f"bench {name}" for name in BENCH_NAMES]


@pytest.fixture(scope="module")
def helps() -> dict[str, dict]:
    """Every ``--help``, all in one interpreter: which modules were loaded after each (cumulative)."""
    import json

    proc = run("-c", HELP_SCRIPT, json.dumps(HELP_COMMANDS))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_help_imports_no_tensorflow_and_shows_defaults(helps: dict[str, dict], command: str):
    result = helps[command]
    assert result["code"] in (0, None)
    assert not result["tensorflow"], f"TensorFlow was imported by the time {command} --help answered"
    assert f"usage: python -m tfbench.{command}" in result["out"]
    if command not in ("images", "mnist", "bench", "grads", "ops", "imagenet", "graphs", "distributed"):
        assert "(default:" in result["out"], result["out"]  # every option with a default says it


def test_help_is_instant_in_a_fresh_process():
    """``-X importtime``: a command's --help loads neither TensorFlow nor Keras."""
    proc = run("-X", "importtime", "-m", "tfbench.fusion", "--help")
    assert proc.returncode == 0
    loaded = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "numpy" in loaded and "tensorflow" not in loaded and "keras" not in loaded


def test_every_command_is_listed_once_and_the_listings_agree():
    package = Path(tfbench.__file__).parent
    commands = {m.name for m in pkgutil.iter_modules(tfbench.__path__)  # runnable modules and packages
                if m.name not in {"bench", "__main__"}
                and ((m.ispkg and (package / m.name / "__main__.py").exists())
                     or (not m.ispkg and "\ndef main(" in (package / f"{m.name}.py").read_text())
                     or (not m.ispkg and "\ndef run_benchmark(" in (package / f"{m.name}.py").read_text()))}
    benchmark_modules = {module.removeprefix("tfbench.") for module, _ in BENCHMARKS.values()}
    assert commands <= set(EXPERIMENTS) | benchmark_modules, commands - set(EXPERIMENTS) - benchmark_modules
    for name in EXPERIMENTS:
        assert importlib.util.find_spec(f"tfbench.{name}") is not None, name
    for module, _ in BENCHMARKS.values():
        assert hasattr(importlib.import_module(module), "run_benchmark"), module
    listing = run("-m", "tfbench").stdout
    assert all(name in listing for name in EXPERIMENTS)
    assert ", ".join(BENCHMARKS) in listing  # python -m tfbench names the same benchmarks as bench --help
    assert all(name in run("-m", "tfbench.bench", "--help").stdout for name in BENCHMARKS)


def test_model_choices_come_from_the_registry():
    from tfbench import complexity
    from tfbench import distributed as distributed_cli
    from tfbench.models import registry

    for names in (lenet_lib.MODELS, mp_lib.MODELS, sparsity_lib.KERAS_MODELS, distributed_cli.MODELS):
        assert set(names) <= set(registry.NAMES), names
    assert set(lenet_lib.MODELS) <= set(registry.MODULE_NAMES)  # --impl module needs them as tf.Modules too
    with pytest.raises(UserError, match="no_such_model: no such file"):  # not a name, not a file either
        complexity.main(["no_such_model"])


def test_bench_mixed_precision_help_names_itself():
    assert "usage: python -m tfbench.bench mixed_precision" in run("-m", "tfbench.bench", "mixed_precision",
                                                                    "--help").stdout


# ---------------------------------------------------------------- paths: one line, exit 2, before any work

@pytest.mark.parametrize("argv", [["vgg_graph"], ["lenet"], ["imagenet", "convert"], ["distributed", "train"],
                                  ["graphs", "show", "lenet5"], ["bench", "matmul"]])
def test_logdir_that_is_a_file(tmp_path: Path, argv: list[str]):
    afile = tmp_path / "afile"
    afile.write_text("x")
    module, *rest = argv
    proc = run("-m", f"tfbench.{module}", *rest, "--logdir", str(afile / "sub"))
    assert_one_line_error(proc, "--logdir", "is a file, not a folder")


def test_text_file_named_mat_as_weights(tmp_path: Path):
    bad = tmp_path / "vgg19.mat"
    bad.write_text("this is not a MATLAB file\n")
    assert bad.stat().st_size == 26
    proc = run("-m", "tfbench.vgg_graph", "--weights", str(bad), "--no-bench", "--no-xla", "--logdir", str(tmp_path))
    assert_one_line_error(proc, str(bad), "not a MATLAB .mat file")


def test_image_that_is_a_folder(tmp_path: Path):
    proc = run("-m", "tfbench.vgg_graph", "--image", str(tmp_path), "--logdir", str(tmp_path))
    assert_one_line_error(proc, "is a folder")


def test_pil_error_names_the_file(tmp_path: Path):
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(b"GIF87 but not really an image at all")
    proc = run("-m", "tfbench.images", str(junk))
    line = assert_one_line_error(proc, "photo.jpg")
    assert "BytesIO" not in line


# ---------------------------------------------------------------- impossible values are refused

@pytest.mark.parametrize("argv, flag", [
    (["distributed", "train", "--strategy", "multiworker", "--workers", "0"], "--workers"),
    (["bench", "matmul", "--sizes", "0"], "--sizes"),
    (["imagenet", "eval", "--limit", "0"], "--limit"),
    (["imagenet", "convert", "--shards", "0"], "--shards"),
    (["lenet", "--batch-size", "0"], "--batch-size"),
    (["graphs", "show", "vgg19", "--image-size", "40"], "divisible by 32"),
    (["mixed_precision", "--image-size", "33"], "divisible by 32"),
    (["complexity", "lenet5", "--image-size", "64"], "only takes 32x32"),
])
def test_impossible_values(argv: list[str], flag: str):
    module, *rest = argv
    assert_one_line_error(run("-m", f"tfbench.{module}", *rest), flag)


def test_consumer_of_an_unreachable_dispatcher_says_what_it_waits_for_and_gives_up():
    proc = run("-m", "tfbench.distributed", "consume", "--dispatcher", "grpc://127.0.0.1:9", "--job-name", "x",
               "--connect-timeout", "2", timeout=60)
    assert "waiting for the tf.data service dispatcher at grpc://127.0.0.1:9 (up to 2 s)" in proc.stdout
    assert_one_line_error(proc, "no tf.data service dispatcher answers at grpc://127.0.0.1:9", "gave up after 2 s")


# ---------------------------------------------------------------- start-up noise

NOISE = ("cuInit", "absl::InitializeLog", "oneDNN custom operations", "cudart_stub")


def test_tensorflow_start_up_lines_stay_off_stderr(tmp_path: Path):
    """A command that lists devices (where the cuInit line comes on a machine without a GPU) prints none of them."""
    argv = ["-m", "tfbench.bench", "matmul", "--sizes", "8", "--chain-size", "4", "--repeats", "1", "--warmup", "0",
            "--logdir", str(tmp_path)]
    proc = run(*argv)
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if any(n in line for n in NOISE)], proc.stderr
    # --verbose brings TensorFlow's own lines back (at least its oneDNN or CUDA notice, on any CPU machine)
    loud = run(*argv, "--verbose")
    assert loud.returncode == 0
    assert any(n in loud.stderr for n in ("cuInit", "cudart_stub", "absl::InitializeLog", "oneDNN")), loud.stderr


def test_real_errors_still_reach_stderr_through_the_filter(tmp_path: Path):
    script = ("from tfbench.plumbing import cli; cli.quiet_tensorflow(False)\n"
              "import os, sys; os.write(2, b'failed call to cuInit: noise\\n'); print('real problem', file=sys.stderr)")
    proc = run("-c", script)
    assert proc.stderr.strip() == "real problem"


def test_the_last_line_survives_a_filter_thread_that_is_late():
    """The error line written just before exit is copied even when the filter's thread, after a quiet ``select``,
    only runs again once the command has exited (on a busy machine it waits that long for the GIL)."""
    script = (
        "import select, time\n"
        "real_select = select.select\n"
        "def late_select(r, w, x, timeout=None):\n"
        "    ready = real_select(r, w, x, timeout)\n"
        "    if not ready[0] and timeout:\n"
        "        time.sleep(0.3)  # as if descheduled between the timeout and the next look at the flag\n"
        "    return ready\n"
        "select.select = late_select\n"
        "from tfbench.plumbing import cli; cli.quiet_tensorflow(False)\n"
        "import sys; time.sleep(0.2); print('error: the last line', file=sys.stderr); sys.exit(2)\n")
    proc = run("-c", script)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: the last line"
