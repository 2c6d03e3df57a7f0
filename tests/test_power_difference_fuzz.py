"""Fuzz PowerDifference against NumPy in a child process, so that a crash cannot hide.

1,000 random cases per backend (rank 0-5 shapes, broadcastable or not, four dtypes, pow
including 0, negative, fractional, NaN and infinity) run in one ``python -m tfbench.ops fuzz``
process: a segfault or abort in the C++ kernel shows up as a negative exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tfbench.operators import fuzz
from tfbench.operators import power_difference as pd

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_fuzz_1000_cases_per_backend_in_a_child_process(tmp_path: Path) -> None:
    pd.load_library()  # build here (cached) so the child only loads it
    summary_path = tmp_path / "fuzz.json"
    result = subprocess.run([sys.executable, "-m", "tfbench.ops", "fuzz", "--cases", "1000", "--seed", "7",
                             "--json", str(summary_path)], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "TFBENCH_OPS_BACKEND": "auto"}, timeout=900)
    assert result.returncode == 0, (f"fuzz process exit code {result.returncode} (negative: killed by a signal, "
                                    f"i.e. a crash)\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    summary = json.loads(summary_path.read_text())
    for backend in ("cpp", "fallback"):
        counts = summary["backends"][backend]
        assert counts["match"] + counts["error"] == 1000
        assert counts["problems"] == 0, counts["first_problems"]
        assert counts["match"] > 600 and counts["error"] > 50  # both outcomes were exercised
    assert summary["backends"]["cpp"]["match"] == summary["backends"]["fallback"]["match"]
    for backend in ("cpp", "fallback"):  # the fused InstanceNorm, fuzzed by the same command
        counts = summary["instance_norm"]["backends"][backend]
        assert counts["problems"] == 0, counts["first_problems"]
        assert counts["match"] > 500 and counts["error"] > 100


def test_the_generator_covers_the_space_it_claims() -> None:
    rng = np.random.default_rng(7)
    cases = [fuzz.random_case(rng) for _ in range(1000)]
    ranks = {c.x.ndim for c in cases} | {c.y.ndim for c in cases}
    assert ranks == {0, 1, 2, 3, 4, 5}
    assert {c.x.dtype.name for c in cases} == {"float16", "bfloat16", "float32", "float64"}
    pows = np.concatenate([c.pow.astype(np.float64).ravel() for c in cases])
    finite = pows[np.isfinite(pows)]
    assert np.isnan(pows).any() and (finite == 0).any() and (finite < 0).any() and (finite % 1 != 0).any()
    assert any(c.pow.shape != () for c in cases)
    assert any(fuzz.expected(c) is None and c.pow.shape == () for c in cases)  # some not broadcastable
    assert any(c.x.size == 0 for c in cases)


def test_compare_rejects_wrong_answers() -> None:
    want = np.array([1.0, np.nan, np.inf, 2.0], np.float32)
    assert fuzz.compare(want.copy(), want) is None
    assert fuzz.compare(np.array([1.0, 0.0, np.inf, 2.0], np.float32), want) is not None  # NaN lost
    assert fuzz.compare(np.array([1.0, np.nan, np.inf, 2.001], np.float32), want) is not None
    assert fuzz.compare(want.astype(np.float64), want) is not None  # wrong dtype
