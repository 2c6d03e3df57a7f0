"""What a newcomer meets first: hints that work as printed, progress on long runs, no alarming log lines."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tfbench import bench

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_bench_without_arguments_lists_the_benchmarks():
    proc = run("-m", "tfbench.bench")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(bench.BENCHMARKS)


def test_printed_tensorboard_command_works_without_an_activated_venv(tmp_path: Path):
    """The hint is computed and run with a PATH that holds no venv (as in a fresh shell)."""
    bare = {"PATH": "/usr/bin:/bin", "VIRTUAL_ENV": ""}
    code = f"from tfbench.plumbing import cli; print(cli.tensorboard_command({str(tmp_path)!r}))"
    printed = run("-c", code, env=bare)
    command = shlex.split(printed.stdout.strip())
    assert command[-2:] == ["--logdir", str(tmp_path)], printed.stdout
    proc = subprocess.run(command + ["--version_tb"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **bare})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()[0].isdigit(), proc.stdout  # TensorBoard's version, e.g. 2.21.0


def test_ops_fuzz_shows_no_tensorflow_error_lines():
    proc = run("-m", "tfbench.ops", "fuzz", "--cases", "40", "--backends", "fallback")
    assert proc.returncode == 0, proc.stderr
    assert "DT_HALF" not in proc.stderr and not [line for line in proc.stderr.splitlines()
                                                 if line.startswith(("E0000", "W0000"))], proc.stderr


def test_classic_shows_progress(tmp_path: Path):
    proc = run("-m", "tfbench.classic", "--k", "1", "--metrics", "l2", "--no-peer", "--softmax-steps", "5",
               "--grid-rows", "0", "--logdir", str(tmp_path), env={"TQDM_MININTERVAL": "0"})
    assert proc.returncode == 0, proc.stderr
    for stage in ("least squares", "softmax regression, 5 Adam steps", "kNN l2, 1000 queries", "TensorBoard"):
        assert stage in proc.stderr, proc.stderr
