"""Faults of the machine end in one ``error:`` line (exit 2) that names the path or size and the cure.

A full disk and a read-only folder are tried for real where this test may mount a small tmpfs (as root),
and always through an injected fault (tests/fault_injection.py) so the test runs everywhere; the
one-line text itself comes from tfbench.plumbing.faults, checked here against the real exceptions (an OSError,
TensorFlow's ResourceExhaustedError, NumPy's _ArrayMemoryError).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfbench.data import imagenet_val
from tfbench.plumbing import cli, errors, faults

ROOT = Path(__file__).resolve().parents[1]
INJECT = Path(__file__).resolve().parent / "fault_injection.py"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return imagenet_val.embedded_sample(tmp_path_factory.mktemp("sample"))


def run(args: list[str], cwd: Path, fault: tuple[str, Path] | None = None) -> subprocess.CompletedProcess:
    """``python -m args...`` (or through the fault injector), with stdout and stderr captured."""
    prefix = [str(INJECT), fault[0], str(fault[1])] if fault else ["-m"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *prefix, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The command ended with exit 2 and exactly one ``error:`` line, no traceback; return that line."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert lines and lines[-1].startswith("error: "), proc.stderr
    assert sum(line.startswith("error") for line in lines) == 1, proc.stderr
    return lines[-1]


def convert(sample: Path, out: Path) -> list[str]:
    """``imagenet convert`` of the embedded sample into ``out`` (two shards, in one process)."""
    return ["tfbench.imagenet", "convert", "--src", str(sample), "--out", str(out), "--shards", "2",
            "--workers", "1", "--no-progress"]


def no_partials(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".partial")] if folder.exists() else True


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(options)``: a small tmpfs at a fresh folder, or None where this process may not mount."""
    mounted = []

    def mount(options: str) -> Path | None:
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        if os.geteuid() != 0:
            return None
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if done.returncode != 0:
            return None
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


# --- the real thing, where a tmpfs can be mounted; the injected fault elsewhere ------------------------

def test_full_disk_during_convert(sample: Path, tmp_path: Path, tmpfs):
    small = tmpfs("size=200k")
    if small is not None:  # the embedded sample's shards need about 330 KiB
        proc = run(convert(sample, small / "out"), tmp_path)
    else:
        small = tmp_path / "full"
        small.mkdir()
        proc = run(convert(sample, small / "out"), tmp_path, fault=("tf-enospc", small))
    line = one_error_line(proc)
    assert line.startswith("error: no space left on the device writing ")
    assert f"{small / 'out'}/validation-0000" in line and ".partial" not in line, line
    assert "this needs about" in line and "free in" in line and "--out" in line, line
    no_partials(small)


def test_read_only_output_folder(sample: Path, tmp_path: Path, tmpfs):
    frozen = tmpfs("size=1m,ro")
    if frozen is not None:
        proc = run(convert(sample, frozen / "out"), tmp_path)
    else:
        frozen = tmp_path / "frozen"
        frozen.mkdir()
        proc = run(convert(sample, frozen / "out"), tmp_path, fault=("erofs", frozen))
    line = one_error_line(proc)
    assert f"{frozen / 'out'}" in line and "read-only" in line, line
    assert "another folder" in line


# --- injected faults: every code path, on any machine ----------------------------------------------------

def test_full_disk_as_tensorflow_reports_it(sample: Path, tmp_path: Path):
    proc = run(convert(sample, tmp_path / "out"), tmp_path, fault=("tf-enospc", tmp_path / "out"))
    line = one_error_line(proc)
    assert f"writing {tmp_path / 'out'}/validation-00000-of-00002:" in line, line
    assert "--out" in line and "this needs about" in line
    no_partials(tmp_path / "out")


def test_full_disk_in_python_writes(sample: Path, tmp_path: Path):
    """The shards are written by TensorFlow, the progress records by Python: that write fails here."""
    proc = run(convert(sample, tmp_path / "out"), tmp_path, fault=("enospc", tmp_path / "out" / ".progress"))
    line = one_error_line(proc)
    assert f"{tmp_path / 'out' / '.progress'}/validation-00000-of-00002.json" in line, line
    no_partials(tmp_path / "out")


def test_read_only_found_mid_run(sample: Path, tmp_path: Path):
    """The output folder passes the start-up check, then a folder cannot be made in it."""
    (tmp_path / "out").mkdir()
    proc = run(convert(sample, tmp_path / "out"), tmp_path, fault=("erofs", tmp_path / "out"))
    line = one_error_line(proc)
    assert line == f"error: {tmp_path / 'out' / '.progress'}: the file system is read-only; " \
                   "pass another folder with --out", line


def test_permission_denied(sample: Path, tmp_path: Path):
    (tmp_path / "out").mkdir()
    proc = run(convert(sample, tmp_path / "out"), tmp_path, fault=("eacces", tmp_path / "out"))
    line = one_error_line(proc)
    assert "permission denied" in line and f"{tmp_path / 'out'}" in line and "--out" in line, line


# --- the one place that words them -----------------------------------------------------------------------

def test_describe_names_the_file_not_its_temporary_and_the_flag(tmp_path: Path):
    partial = tmp_path / "out" / ".validation-00001-of-00004.k2j3h4.partial"
    err = OSError(errno.ENOSPC, "No space left on device", str(partial))
    line = faults.describe(err, {"--out": [str(tmp_path / "out")]})
    assert line.startswith(f"no space left on the device writing {tmp_path / 'out'}/validation-00001-of-00004: ")
    assert line.endswith("free some space or pass another folder with --out")


def test_describe_tensorflow_full_disk_and_the_space_needed(tmp_path: Path):
    import tensorflow as tf

    err = tf.errors.ResourceExhaustedError(None, None, f"{tmp_path}/x.tfrecord; No space left on device")
    with pytest.raises(tf.errors.ResourceExhaustedError) as caught:
        with faults.needs_space(tmp_path, 3 << 30):
            raise err
    line = faults.describe(caught.value, {"--logdir": [str(tmp_path)]})
    assert f"writing {tmp_path}/x.tfrecord: " in line and "this needs about 3 GiB in all" in line
    assert line.endswith("pass another folder with --logdir")


def test_describe_numpy_out_of_memory_names_the_flag():
    with pytest.raises(MemoryError) as caught:
        np.empty((10 ** 7, 224, 224, 3), np.float32)
    line = faults.describe(caught.value, {"--batch-size": [str(10 ** 7)], "--seed": ["3"]})
    assert line.startswith("out of memory: an array of shape (10000000, 224, 224, 3) float32 needs 5.48 TiB")
    assert line.endswith("lower --batch-size")


def test_describe_tensorflow_out_of_memory_names_the_flag():
    import tensorflow as tf

    err = tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[100000000,32,32,1] "
                                                       "and type float on /job:localhost/device:CPU:0 by allocator cpu")
    line = faults.describe(err, {"--batch-size": ["100000000"]})
    assert line.startswith("out of memory: a tensor of shape (100000000, 32, 32, 1) float32 needs 381 GiB; ")
    assert line.endswith("lower --batch-size")


def _parsed(argv: list[str]) -> None:
    """Parse ``argv`` with a command-like parser, as a command does (the options are remembered for faults)."""
    parser = cli.parser("probe", None)
    parser.add_argument("model")
    parser.add_argument("--quick", action="store_true")
    cli.add_repeats(parser, 5)
    cli.add_batch_size(parser, 1)
    cli.add_logdir(parser)
    cli.parse(parser, argv)


def test_a_flag_without_a_value_is_never_named_for_the_next_word(tmp_path: Path):
    model = tmp_path / "data" / "model.keras"
    _parsed(["--quick", str(model), "--logdir", str(tmp_path / "logs")])
    line = faults.describe(PermissionError(errno.EACCES, "Permission denied", str(model)))
    assert "--quick" not in line and line.endswith("or use another path"), line
    line = faults.describe(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "logs" / "x.json")))
    assert line.endswith("or pass another folder with --logdir"), line


def test_out_of_memory_names_the_flag_that_sized_the_array_not_a_small_one_equal_to_a_dimension():
    _parsed(["m.keras", "--repeats", "3", "--batch-size", "100000"])
    with pytest.raises(MemoryError) as caught:
        np.empty((100000, 224, 224, 3, 1000), np.float32)
    line = faults.describe(caught.value)
    assert line.endswith("lower --batch-size"), line


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (1023 * 1024, "1023 KiB"),
                                     (1023.9 * 1024, "1 MiB"), (5.48 * 2 ** 40, "5.48 TiB"),
                                     (381 * 2 ** 30, "381 GiB")])
def test_human_bytes_never_writes_an_exponent(n: float, text: str):
    assert faults.human_bytes(n) == text


def test_first_line_of_an_error_skips_autograph_header_and_survives_an_empty_message():
    import tensorflow as tf

    @tf.function
    def broken(x):
        if tf.reduce_sum(x) > 0:
            raise NotImplementedError("no kernel for this shape")
        return x

    with pytest.raises(NotImplementedError) as caught:
        broken(tf.ones([2]))
    assert str(caught.value).lstrip().startswith("in user code:")  # what a naive splitlines()[0] would print
    assert errors.first_line(caught.value) == "NotImplementedError: no kernel for this shape"
    assert errors.first_line(ValueError()) == "ValueError"
    assert errors.first_line(ValueError("\n\nfirst\nsecond"), limit=3) == "fir"
    assert errors.first_line(tf.errors.InvalidArgumentError(None, None, "bad shape [3]\n\tnode x")) == "bad shape [3]"


def test_programming_errors_keep_their_tracebacks():
    assert faults.describe(ValueError("a bug"), {}) is None
    assert faults.describe(OSError(errno.ENOENT, "No such file or directory", "x"), {}) is None
    assert faults.describe(PermissionError(errno.EPERM, "Operation not permitted"), {}) is None  # no path: no cure

    def main(argv):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        errors.run_cli(main, [])


def test_run_cli_prints_a_fault_as_one_line(capsys, tmp_path: Path):
    def main(argv):
        parser = cli.parser("probe", None)
        cli.add_logdir(parser)
        cli.parse(parser, argv)  # as every command does: the parser's options name the flag
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "logs"))

    with pytest.raises(SystemExit) as exited:
        errors.run_cli(main, ["--logdir", str(tmp_path / "logs")])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'logs'}: the file system is read-only; "
                                       "pass another folder with --logdir\n")


def test_check_memory_refuses_with_the_largest_value_that_fits():
    available = faults.available_memory()
    assert available
    with pytest.raises(errors.UserError, match=r"^--batch-size 1000: the batch need about .*; use --batch-size (\d+)"
                       ) as refused:
        cli.check_memory(flag="--batch-size", value=1000, per_unit=available // 500, fixed=1 << 20,
                            what="the batch")
    most = int(str(refused.value).rsplit("--batch-size ", 1)[1].split()[0])
    assert 400 <= most <= 500  # what is available moves a little between the two reads
    cli.check_memory(flag="--batch-size", value=1, per_unit=1024, what="the batch")  # fits: no error


def test_an_interrupt_that_surfaces_as_another_exception_still_ends_130(capsys):
    """Ctrl-C in the middle of an import can leave a half-made module that fails with AttributeError."""
    import signal

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            raise AttributeError("'tuple' object has no attribute '_type_spec'") from None

    saved = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as exited:
            errors.run_cli(main, [])
    finally:
        signal.signal(signal.SIGINT, saved)
    assert exited.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"
