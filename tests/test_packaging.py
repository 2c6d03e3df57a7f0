"""tfbench as a package: the shipped files, the ``tfbench`` command, and the wheel installed as a user installs it.

The slow test builds the wheel from a copy of the source tree, installs it with its dependencies into a
fresh virtualenv (pip's cache makes that a copy, not a download) and runs the installed ``tfbench`` from a
folder outside the checkout: ``--help``, the main job, ``ops build`` and one PowerDifference and one
InstanceNorm call, with the
folder outside the checkout: ``--help``, the main job, ``ops build`` and one PowerDifference call (and one
TfbenchConv2D call, its library built on first use), with the
cache in a temporary folder; nothing may be written into site-packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tfbench
from tfbench import __main__ as listing
from tfbench.plumbing import paths

REPO = Path(__file__).resolve().parent.parent
#: what a source tree holds that the wheel is not built from (the user's .venv, logs, old builds)
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".venv-scalesim", "logs", "build", "dist", "*.egg-info",
                                     "__pycache__", ".pytest_cache", "*.so")


def run(*args: str | Path, cwd: Path = REPO, env: dict[str, str] | None = None,
        timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ fast: shipped files, the package list

def test_the_shipped_files_are_found_through_one_lookup() -> None:
    index = paths.shipped("datasets", "imagenet", "imagenet_class_index.json")
    assert index.is_file() and '"281": ["n02123045", "tabby"]' in index.read_text()
    source = paths.shipped("custom_ops", "power_difference", "power_difference.cc")
    assert 'REGISTER_OP("PowerDifference")' in source.read_text()
    with pytest.raises(ValueError, match="ships no folder 'logs'"):
        paths.shipped("logs")


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "tfbench").rglob("__init__.py")}
    mapped = config["package-dir"]
    listed, wanted = set(config["packages"]), on_disk | set(mapped)
    assert listed == wanted, (
        f"pyproject.toml [tool.setuptools] packages: add {sorted(wanted - listed)}, remove {sorted(listed - wanted)}")
    assert mapped == {package: folder for folder, package in paths.SHIPPED.items()}
    for folder in mapped.values():
        assert (REPO / folder).is_dir()


# ------------------------------------------------------------------ fast: the tfbench command

def test_help_and_version_answer_without_tensorflow() -> None:
    result = run(sys.executable, "-X", "importtime", "-m", "tfbench", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "tfbench.bench" in imported and "tensorflow" not in imported and "keras" not in imported
    for name in listing.EXPERIMENTS:
        assert f"  {name} " in result.stdout
    version = run(sys.executable, "-m", "tfbench", "--version")
    assert (version.returncode, version.stdout) == (0, f"tfbench {tfbench.__version__}\n")


def test_an_experiment_runs_as_with_python_m() -> None:
    via_command = run(sys.executable, "-m", "tfbench", "vgg_graph", "--repeats", "0")
    via_module = run(sys.executable, "-m", "tfbench.vgg_graph", "--repeats", "0")
    assert via_command.returncode == via_module.returncode == 2
    assert via_command.stderr == via_module.stderr.replace("python -m tfbench.vgg_graph", "tfbench vgg_graph")
    assert via_command.stderr.startswith("tfbench vgg_graph: error: argument --repeats: must be at least 1")
    helped = run(sys.executable, "-m", "tfbench", "complexity", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: tfbench complexity")


def test_an_unknown_experiment_is_one_error_line() -> None:
    result = run(sys.executable, "-m", "tfbench", "no_such_thing")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no experiment 'no_such_thing'" in result.stderr
    assert "vgg_graph" in result.stderr


# ------------------------------------------------------------------ slow: the wheel, installed

def _files(folder: Path) -> set[str]:
    """Every file under ``folder`` (bytecode caches aside: the interpreter writes those wherever it may)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    timings: dict[str, float] = {}

    def timed(step: str, *args: str | Path, **kwargs) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        result = run(*args, **kwargs)
        timings[step] = round(time.perf_counter() - start, 1)
        assert result.returncode == 0, (step, result.returncode, result.stdout[-2000:], result.stderr[-3000:])
        return result

    shutil.copytree(REPO, tmp_path / "src", ignore=NOT_SOURCES)
    timed("wheel", sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp_path / "dist", tmp_path / "src")
    (wheel,) = (tmp_path / "dist").glob("tfbench-*.whl")
    timed("venv", sys.executable, "-m", "venv", tmp_path / "venv")
    venv = tmp_path / "venv" / "bin"
    timed("install", venv / "pip", "install", "-q", "--disable-pip-version-check", wheel, timeout=1500)
    site = Path(timed("site", venv / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    installed = _files(site)
    assert {"tfbench/datasets/imagenet/imagenet_class_index.json",
            "tfbench/custom_ops/power_difference/power_difference.cc",
            "tfbench/custom_ops/instance_norm/instance_norm.cc",
            "tfbench/custom_ops/decode_resize_normalise/decode_resize_normalise.cc",
            "tfbench/custom_ops/resize_normalise/resize_kernels.h",
            "tfbench/custom_ops/conv2d/conv2d.cc", "tfbench/custom_ops/conv2d/simd.h"} <= installed

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"TFBENCH_CACHE": str(tmp_path / "cache"), "PATH": f"{venv}{os.pathsep}{env.get('PATH', '')}"}

    helped = timed("help", venv / "tfbench", "--help", cwd=outside, env=env)
    assert "vgg_graph" in helped.stdout and "ops" in helped.stdout
    for name in listing.EXPERIMENTS:  # every command the listing promises answers --help from the wheel, both ways
        usage = timed(f"{name} --help", venv / "python", "-m", f"tfbench.{name}", "--help", cwd=outside, env=env)
        assert usage.stdout.startswith("usage:") and name in usage.stdout.splitlines()[0], (name, usage.stdout[:300])
    assert "usage: tfbench ops" in timed("tfbench ops --help", venv / "tfbench", "ops", "--help", cwd=outside,
                                          env=env).stdout
    job = timed("vgg_graph", venv / "tfbench", "vgg_graph", "--no-bench", "--no-xla", "--logdir", tmp_path / "logs",
                cwd=outside, env=env, timeout=900)
    assert "top-5 classes" in job.stdout and "tensorboard --logdir" in job.stdout
    assert list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    built = timed("ops build", venv / "tfbench", "ops", "build", "--op", "power_difference", cwd=outside, env=env)
    library = Path(built.stdout.strip())
    assert library.is_file() and library.is_relative_to(tmp_path / "cache" / "ops" / "power_difference")
    code = ("import tfbench; from tfbench.operators import power_difference as pd; print(tfbench.__file__); "
            "print(pd.power_difference([3.0, 5.0], [1.0, 1.0], 3.0, backend='cpp').numpy().tolist())")
    called = timed("PowerDifference", venv / "python", "-c", code, cwd=outside, env=env)
    where, values = called.stdout.split("\n")[:2]
    assert Path(where).is_relative_to(site) and values == "[8.0, 64.0]"
    timed("ops build instance_norm", venv / "tfbench", "ops", "build", "--op", "instance_norm", cwd=outside, env=env)
    code = ("import numpy as np; from tfbench.operators import fused_instance_norm as fin; "
            "x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2); "
            "y = fin.instance_norm(x, [1.0, 2.0], [0.0, 1.0], backend='cpp'); "
            "print(float(np.abs(y - fin.composite(x, [1.0, 2.0], [0.0, 1.0])).max()))")
    normed = timed("InstanceNorm", venv / "python", "-c", code, cwd=outside, env=env)
    assert float(normed.stdout.strip().splitlines()[-1]) < 1e-5
    code = ("import numpy as np; from tfbench.operators import conv2d; "
            "y = conv2d.conv2d(np.ones((1, 3, 3, 2), np.float32), np.ones((3, 3, 2, 1), np.float32), "
            "algorithm='im2col', backend='cpp'); print(y.numpy()[0, :, :, 0].tolist())")
    called = timed("TfbenchConv2D", venv / "python", "-c", code, cwd=outside, env=env, timeout=900)
    assert called.stdout.strip().splitlines()[-1] == "[[8.0, 12.0, 8.0], [12.0, 18.0, 12.0], [8.0, 12.0, 8.0]]"

    assert _files(site) == installed, f"written into site-packages: {sorted(_files(site) - installed)}"
    print(f"packaging test steps (s): {timings}")
