"""Ctrl-C during ``python -m tfbench.imagenet convert``, at several moments (imports and worker start-up included).

Each interrupt is SIGINT to the whole process group, as a terminal sends it: the command must end
promptly (bounded by a timeout here) with exit 130, the one line "interrupted", no traceback, no
temporary file left (``.partial``, images a worker prepared), only complete shards on disk; and the
same command run again must finish with shards byte for byte those of a run never interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfbench.data import imagenet_val, writer
from tfbench.data.manifest import MANIFEST, sha256_file

ROOT = Path(__file__).resolve().parents[1]
# spread over start-up (imports, spawning the workers), the first shards and the middle of the run;
# 48 images in 16 shards take about 8 s on a quiet 2-core machine
DELAYS = (0.3, 1.0, 2.0, 3.5, 6.0)


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> Path:
    """A raw val folder of 48 JPEGs (the embedded photos repeated under new val numbers)."""
    sample = imagenet_val.embedded_sample(tmp_path_factory.mktemp("sample"))
    photos = sorted(sample.glob("*.JPEG"))
    src = tmp_path_factory.mktemp("val")
    for i in range(48):
        shutil.copy(photos[i % len(photos)], src / f"ILSVRC2012_val_{i + 1:08d}.JPEG")
    return src


def convert(src: Path, out: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tfbench.imagenet", "convert", "--src", str(src),
                             "--out", str(out), "--shards", "16", "--workers", "2", "--no-progress"],
                            cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("validation-*"))}


@pytest.fixture(scope="module")
def reference(val: Path, tmp_path_factory) -> dict[str, bytes]:
    """The shards of a conversion never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "out"
    proc = convert(val, out, out.parent)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return shard_bytes(out)


@pytest.mark.parametrize("delay", DELAYS)
def test_ctrl_c_at_any_moment_then_rerun(val: Path, reference: dict[str, bytes], tmp_path: Path, delay: float):
    out = tmp_path / "out"
    proc = convert(val, out, tmp_path)
    time.sleep(delay)
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    signalled = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"convert did not end within 60 s of Ctrl-C at {delay} s")
    assert time.monotonic() - signalled < 20, "convert waited for its workers after Ctrl-C"
    if proc.returncode != 0:  # (0: it finished before the signal came; the rerun below still must match)
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
        assert stderr.strip().splitlines() == ["interrupted"], stderr
        assert not (out / MANIFEST).exists()
        assert _group_empties(proc.pid), "a worker outlived the command"
        leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".partial") or writer.PREPARED_SUFFIX in p.name]
        assert leftovers == [], leftovers
        for shard in out.glob("validation-*"):  # what is there is complete, as its progress record says
            record = json.loads((out / writer.PROGRESS_DIR / f"{shard.name}.json").read_text())
            assert shard.stat().st_size == record["bytes"]
            assert sha256_file(shard) == record["sha256"]

    rerun = convert(val, out, tmp_path)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert shard_bytes(out) == reference


def _group_empties(pgid: int, within: float = 10.0) -> bool:
    """True once no live process (zombies aside) is left in process group ``pgid``."""
    deadline = time.monotonic() + within
    while True:
        ps = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True).stdout
        if not [s for s in ps.split() if not s.startswith("Z")]:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
