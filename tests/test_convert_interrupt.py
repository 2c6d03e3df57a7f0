"""Ctrl-C during ``python -m tfbench.imagenet convert``, at many moments (worker start-up included).

Each interrupt is SIGINT to the whole process group, as a terminal sends it: the command must end
promptly (bounded by a timeout here) with exit 130, the one line "interrupted", no traceback, and
only complete shards on disk (each one listed in its progress record with that size and sha256).
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
# spread over start-up (imports, spawning the workers), the first shards, the middle and (under
# little load) the end of the run; 240 images in 60 shards take about 25 s on a shared 2-core machine
DELAYS = (0.3, 0.8, 1.2, 1.5, 1.8, 2.2, 2.8, 4.0, 7.0, 10.0)


@pytest.fixture(scope="module")
def big_val(tmp_path_factory) -> Path:
    """A raw val folder of 240 JPEGs (the embedded photos repeated under new val numbers)."""
    sample = imagenet_val.embedded_sample(tmp_path_factory.mktemp("sample"))
    photos = sorted(sample.glob("*.JPEG"))
    src = tmp_path_factory.mktemp("val")
    for i in range(240):
        shutil.copy(photos[i % len(photos)], src / f"ILSVRC2012_val_{i + 1:08d}.JPEG")
    return src


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("delay", DELAYS)
def test_ctrl_c_at_any_moment_ends_promptly_with_complete_shards(big_val: Path, tmp_path: Path, delay: float):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "tfbench.imagenet", "convert", "--src", str(big_val),
                             "--out", str(out), "--shards", "60", "--workers", "2", "--no-progress"],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
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
    if proc.returncode == 0:  # finished before the signal arrived: nothing to check about interrupts
        assert (out / MANIFEST).exists()
        return
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted", stderr
    assert "Traceback" not in stdout
    assert not (out / MANIFEST).exists()
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".partial") or writer.PREPARED_SUFFIX in p.name]
    assert leftovers == [] or all(writer.PREPARED_SUFFIX in n for n in leftovers), leftovers
    for shard in out.glob("validation-*"):
        record = json.loads((out / writer.PROGRESS_DIR / f"{shard.name}.json").read_text())
        assert shard.stat().st_size == record["bytes"]
        assert sha256_file(shard) == record["sha256"]
    assert _group_empties(proc.pid), "a worker outlived the command"


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
