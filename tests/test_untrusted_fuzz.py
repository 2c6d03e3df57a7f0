"""Byte-mutated model files never take tfbench down: each ends loaded (exit 0) or refused in one line (exit 2).

200 seeded mutants each of a ``.keras`` archive, a legacy ``.h5`` file and a SavedModel's
``saved_model.pb`` (1 to 8 random bytes overwritten), written by this test; the zip's checksums
catch every mutated ``.keras``, so 100 more mutate ``config.json`` inside an archive zipped again.  Each goes the way
``python -m tfbench.inspect`` takes it: in the command's own process the structural checks
(:func:`tfbench.models.load.file_kind`) and what is read as data only (the SavedModel scan, the
``.keras`` config: :func:`tfbench.models.load.check_before_loading`); then everything again, the
load and the first trace in the loading child of :mod:`tfbench.models.isolate`.  A command starts one
child per file; here one child serves all the mutants of a kind (a fresh one after each crash), so
600 files cost three TensorFlow start-ups, not 600: the answers are the same lines the command
prints.  A few mutants of each kind also go through the real command.

The outcome asserted for every mutant: None (the command goes on, exit 0) or one line naming the
file (exit 2), within the child's 60 s limit; a child that died by a signal is one of those lines
too (that is the point of the child), and the test prints how many did.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from keras import layers as L

from tfbench.models import isolate, load
from tfbench.plumbing.errors import UserError

REPO = Path(__file__).resolve().parent.parent
MUTANTS = 200  # per kind: run in full in CI (about 80 s for all three on 2 busy cores)
INSIDE_MUTANTS = 100  # .keras archives whose config.json is mutated and zipped again (valid checksums)
SEED = 30


def small_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 1), name="image")
    x = L.Conv2D(2, 3, name="conv")(i)
    x = L.BatchNormalization(name="bn")(x)
    return keras.Model(i, L.Dense(3, name="fc")(L.Flatten(name="flat")(x)), name="fuzzed")


class Affine(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.random.stateless_normal((6, 3), seed=[0, 1]), name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)])
    def __call__(self, x):
        return tf.nn.relu(tf.matmul(x, self.w))


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


@pytest.fixture(scope="module")
def mutants(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("fuzz")
    model = small_model()
    model.save(root / "base.keras")
    model.save(root / "base.h5")
    tf.saved_model.save(Affine(), str(root / "base_sm"))
    rng = random.Random(SEED)
    out: dict[str, list[Path]] = {"keras": [], "h5": [], "savedmodel": [], "keras-inside": []}
    for kind, base in (("keras", root / "base.keras"), ("h5", root / "base.h5")):
        data = base.read_bytes()
        for i in range(MUTANTS):
            path = root / f"m{i:03d}{base.suffix}"
            path.write_bytes(mutate(data, rng))
            out[kind].append(path)
    with zipfile.ZipFile(root / "base.keras") as archive:  # inside a valid zip: these reach Keras
        members = {name: archive.read(name) for name in archive.namelist()}
    for i in range(INSIDE_MUTANTS):
        path = root / f"inside{i:03d}.keras"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, mutate(data, rng) if name == "config.json" else data)
        out["keras-inside"].append(path)
    pb = (root / "base_sm" / "saved_model.pb").read_bytes()
    for i in range(MUTANTS):
        folder = root / f"sm{i:03d}"
        shutil.copytree(root / "base_sm", folder)
        (folder / "saved_model.pb").write_bytes(mutate(pb, rng))
        out["savedmodel"].append(folder)
    return out


def outcome(prober: isolate.Prober, path: Path) -> str | None:
    """What ``python -m tfbench.inspect PATH`` decides: None (loads) or the error line's text."""
    try:  # the command's own process: the structure, then what is read as data only (scan, .keras config)
        load.check_before_loading(path, load.file_kind(path), allow_code=False)
    except UserError as err:
        return str(err)
    return prober.check(isolate.Request(str(path)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel", "keras-inside"])
def test_mutants_end_loaded_or_refused_in_one_line(mutants, kind, capsys):
    results: Counter = Counter()
    with isolate.Prober(timeout=isolate.DEFAULT_TIMEOUT) as prober:
        for path in mutants[kind]:
            line = outcome(prober, path)
            if line is None:
                results["loaded"] += 1
                continue
            assert "\n" not in line and line.startswith(str(path)), line
            assert "Traceback" not in line, line
            results["crashed child" if "crashed" in line else "timed out" if "longer than" in line else
                    "refused"] += 1
        restarts = prober.started
    with capsys.disabled():
        print(f"\n{kind}: {dict(results)}; {restarts} loading child(ren) started")
    assert sum(results.values()) == len(mutants[kind])
    assert results["refused"] > 0  # the mutants do damage: some are caught


@pytest.mark.slow
def test_a_few_mutants_through_the_command(mutants, tmp_path):
    rng = random.Random(SEED)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for kind in ("keras", "h5", "savedmodel"):
        for path in rng.sample(mutants[kind], 1):
            proc = subprocess.run([sys.executable, "-m", "tfbench.inspect", str(path), "--quick", "--no-progress",
                                   "--logdir", str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
            assert proc.returncode in (0, 2), (path, proc.returncode, proc.stderr[-2000:])
            assert "Traceback" not in proc.stderr
            if proc.returncode == 2:
                lines = [line for line in proc.stderr.splitlines() if line.strip()]
                assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), proc.stderr[-2000:]
