"""Fuzz the fused InstanceNorm op against NumPy: random shapes, channel counts, epsilons and values.

Every case either matches instance normalisation computed by NumPy in float64 (within the dtype's
tolerance, NaN where NumPy gives NaN) or raises ``tf.errors.InvalidArgumentError`` exactly when it
should: x not 4-D, gamma or beta not ``[channels]``, epsilon not positive and finite, or planes of
no pixels.  Shapes have rank 3 to 5, dimensions 0 to 6 and up to 40 channels (across the op's
16-channel blocks); values include constant planes (variance 0), a large offset and NaN.

Part of ``python -m tfbench.ops fuzz`` (:mod:`tfbench.operators.fuzz` runs it after PowerDifference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tfbench.operators import fused_instance_norm as fin
from tfbench.operators import fuzzing

DTYPES = (np.float32, np.float64)
# units in the last place allowed, times the problem's condition: the output's scale and how far the values lie
# from zero against their spread (x - mean of a plane at 1000 +- 0.01 loses 5 digits in any float arithmetic)
ULPS = 16
EPSILONS = (1e-3, 1e-5, 1.0, 0.0, -1e-3, float("nan"), float("inf"))


@dataclass
class Case:
    """One fuzz case: x, gamma, beta and the attributes."""

    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    epsilon: float
    variance: str

    def describe(self) -> str:
        """Shapes, dtype and attributes, for failure messages."""
        return (f"x{list(self.x.shape)} gamma{list(self.gamma.shape)} beta{list(self.beta.shape)} "
                f"epsilon={self.epsilon} variance={self.variance} {self.x.dtype}")


def random_case(rng: np.random.Generator) -> Case:
    """Draw one case (about one in five is invalid)."""
    dtype = DTYPES[int(rng.integers(0, len(DTYPES)))]
    rank = 4 if rng.random() < 0.92 else int(rng.choice([3, 5]))
    shape = [int(rng.choice([0, 1, 2, 3, 5, 6], p=[0.04, 0.2, 0.3, 0.2, 0.16, 0.1])) for _ in range(rank)]
    if rank == 4:
        shape[3] = int(rng.integers(1, 41)) if rng.random() < 0.95 else 0
    scale, offset = 10.0 ** rng.uniform(-2, 2), rng.choice([0.0, 3.0, 1000.0])
    x = (rng.normal(size=shape) * scale + offset).astype(dtype)
    if x.size and rng.random() < 0.1:
        x[...] = x.reshape(-1)[0]  # constant planes: variance 0
    if x.size and rng.random() < 0.05:
        x.reshape(-1)[int(rng.integers(0, x.size))] = np.nan
    channels = shape[-1] if shape else 1
    sizes = [channels, channels]
    if rng.random() < 0.08:
        sizes[int(rng.integers(0, 2))] = channels + int(rng.integers(1, 3))
    gamma, beta = (rng.normal(1.0, 0.5, size=n).astype(dtype) for n in sizes)
    epsilon = float(EPSILONS[int(rng.integers(0, len(EPSILONS)))]) if rng.random() < 0.3 else 1e-3
    return Case(x, gamma, beta, epsilon, fin.VARIANCES[int(rng.integers(0, 2))])


def expected(case: Case) -> np.ndarray | None:
    """NumPy's answer in float64, or None when the op must raise InvalidArgumentError."""
    x = case.x
    if x.ndim != 4 or case.gamma.shape != (x.shape[3],) or case.beta.shape != (x.shape[3],):
        return None
    if not 0 < case.epsilon < float("inf"):
        return None
    if x.shape[1] * x.shape[2] == 0:
        return np.zeros(x.shape) if x.size == 0 and x.shape[0] * x.shape[3] == 0 else None
    x = x.astype(np.float64)
    epsilon = float(np.float32(case.epsilon))  # the op's attr is a float32, as FusedBatchNorm's
    with np.errstate(all="ignore"):
        mean = x.mean(axis=(1, 2), keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=(1, 2), keepdims=True)
        return (x - mean) / np.sqrt(variance + epsilon) * case.gamma + case.beta


def tolerance(case: Case, want: np.ndarray) -> float:
    """The absolute difference allowed: :data:`ULPS` ulps of the output's scale, times the planes' condition."""
    x = case.x.astype(np.float64)
    finite = ~np.isnan(want)
    scale = max(1.0, float(np.abs(want[finite]).max())) if finite.any() else 1.0
    with np.errstate(all="ignore"):
        spread = np.sqrt(np.nanmin(x.var(axis=(1, 2))) + float(np.float32(case.epsilon)))
        condition = 1.0 + float(np.nanmax(np.abs(x))) / spread if np.isfinite(spread) and spread > 0 else 1.0
    return ULPS * float(np.finfo(case.x.dtype).eps) * scale * condition


def compare(got: np.ndarray, want: np.ndarray, case: Case) -> str | None:
    """None if ``got`` matches ``want`` within :func:`tolerance`, else what differs."""
    dtype = case.x.dtype
    if got.shape != want.shape or got.dtype != dtype:
        return f"shape/dtype {got.shape} {got.dtype} != {want.shape} {dtype}"
    if not want.size:
        return None
    g = got.astype(np.float64)
    if (np.isnan(g) != np.isnan(want)).any():
        return "NaN at different places"
    finite = ~np.isnan(want)
    bad = np.abs(g[finite] - want[finite]) > tolerance(case, want)
    if bad.any():
        return f"values differ: got {g[finite][bad][:3]}, NumPy {want[finite][bad][:3]}"
    return None


def check(case: Case, backend: str) -> tuple[str, str | None]:
    """Run one case; returns (outcome, problem): outcome "match" or "error", problem None if fine."""
    want = expected(case)
    return fuzzing.outcome(lambda: fin.instance_norm(case.x, case.gamma, case.beta, epsilon=case.epsilon,
                                                     variance=case.variance, backend=backend).numpy(),
                           want is None, lambda got: compare(got, want, case))

def run(cases: int, seed: int, backends: Sequence[str] = ("cpp", "fallback"), progress: bool = True) -> dict[str, Any]:
    """Run ``cases`` random cases on each backend; returns counts and the first problems."""
    backends_run = fuzzing.run_cases("InstanceNorm", random_case, check, cases, seed, backends, progress)
    summary: dict[str, Any] = {"cases": cases, "seed": seed, "backends": backends_run}
    return summary
