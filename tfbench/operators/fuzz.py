"""Fuzz PowerDifference against NumPy: random shapes, dtypes, exponents and values.

Every case either matches ``np.power(x - y, pow)`` (within the dtype's tolerance; NaN where
NumPy gives NaN, the same infinities) or raises ``tf.errors.InvalidArgumentError`` exactly when
it should (x and y not broadcastable, or ``pow`` not a scalar).  Shapes have rank 0 to 5
(dimensions 0 to 4, broadcastable or not), dtypes are float16, bfloat16, float32 and float64,
exponents include 0, negative, fractional, NaN and infinite values, and the inputs include
zeros, equal pairs (x - y == 0), NaN and infinities.  One case in ten is the broadcast of
instance normalisation, ``[N, H, W, C]`` against ``[N, 1, 1, C]`` (or the other way round), which
the kernel runs on its fast path.

The fused ``InstanceNorm`` op is fuzzed after it (:mod:`tfbench.operators.fuzz_instance_norm`).

The tests run this in a subprocess (``python -m tfbench.ops fuzz``) so that a crash of the
C++ kernel shows up as a failed exit code instead of taking the test run down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import ml_dtypes
import numpy as np

from tfbench.operators import fuzz_instance_norm, fuzzing
from tfbench.operators.power_difference import power_difference

DTYPES = (np.float16, ml_dtypes.bfloat16, np.float32, np.float64)
# relative tolerance per dtype: a few units in the last place of the result
RTOL = {np.dtype(np.float16): 2e-3, np.dtype(ml_dtypes.bfloat16): 1.6e-2,
        np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
SPECIAL_POWS = (0.0, 1.0, 2.0, 3.0, -1.0, -2.0, 0.5, -0.5, 1.5, -2.5, 1 / 3, np.nan, np.inf, -np.inf)


@dataclass
class Case:
    """One fuzz case: the three inputs as NumPy arrays of one dtype."""

    x: np.ndarray
    y: np.ndarray
    pow: np.ndarray

    def describe(self) -> str:
        """Shapes, dtype and exponent, for failure messages."""
        return (f"x{list(self.x.shape)} y{list(self.y.shape)} "
                f"pow{list(self.pow.shape)}={self.pow.ravel()[:3]} {self.x.dtype}")


def _shapes(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes of rank 0-5 that usually broadcast (one dimension broken a quarter of the time)."""
    if rng.random() < 0.1:  # a per-channel value against a plane: the kernel's fast path
        n, h, w, c = (int(d) for d in rng.integers(1, 7, size=4))
        plane, values = (n, h, w, c), (n, 1, 1, c)
        return (plane, values) if rng.random() < 0.5 else (values, plane)
    rank = int(rng.integers(0, 6))
    base = [int(rng.choice([0, 1, 2, 3, 4], p=[0.04, 0.16, 0.3, 0.3, 0.2])) for _ in range(rank)]

    def derive() -> list[int]:
        keep = int(rng.integers(0, rank + 1)) if rng.random() < 0.4 else rank  # drop leading dims
        return [1 if rng.random() < 0.3 else d for d in base[rank - keep:]]

    x, y = derive(), derive()
    if y and rng.random() < 0.25:
        i = int(rng.integers(0, len(y)))
        y[i] = int(rng.integers(2, 6))
    return tuple(x), tuple(y)


def _values(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Uniform values with small integers, zeros, NaN and infinities sprinkled in."""
    values = rng.uniform(-3, 3, size=shape)
    kind = rng.random(size=shape)
    values = np.where(kind < 0.15, np.round(values), values)
    values = np.where((kind >= 0.15) & (kind < 0.2), 0.0, values)
    values = np.where((kind >= 0.2) & (kind < 0.23), np.nan, values)
    values = np.where((kind >= 0.23) & (kind < 0.25), np.inf * np.sign(values - 0.5), values)
    return np.asarray(values).astype(dtype)


def random_case(rng: np.random.Generator) -> Case:
    """Draw one case."""
    dtype = DTYPES[int(rng.integers(0, len(DTYPES)))]
    x_shape, y_shape = _shapes(rng)
    x = _values(rng, x_shape, dtype)
    y = _values(rng, y_shape, dtype)
    if rng.random() < 0.2 and x.shape == y.shape:
        y = x.copy()  # x - y == 0 everywhere (or NaN)
    value = SPECIAL_POWS[int(rng.integers(0, len(SPECIAL_POWS)))] if rng.random() < 0.6 else rng.uniform(-3, 3)
    pow_shape: tuple[int, ...] = ()
    if rng.random() < 0.08:
        pow_shape = tuple(int(d) for d in rng.integers(1, 3, size=int(rng.integers(1, 3))))
    return Case(x, y, np.full(pow_shape, value).astype(dtype))


def expected(case: Case) -> np.ndarray | None:
    """NumPy's answer, or None when the op must raise InvalidArgumentError."""
    if case.pow.shape != ():
        return None
    try:
        np.broadcast_shapes(case.x.shape, case.y.shape)
    except ValueError:
        return None
    with np.errstate(all="ignore"):
        d = np.asarray(case.x - case.y)
        # An exponent array, not a scalar: for a scalar 0.5 NumPy takes a sqrt shortcut that gives
        # NaN for pow(-inf, 0.5), where C's pow (and TensorFlow) give +inf.
        flat = d.reshape(-1)  # at least 1-D: for a 0-d array NumPy takes the shortcut too
        return np.power(flat, np.full(flat.shape, case.pow, dtype=d.dtype)).reshape(d.shape)


def compare(got: np.ndarray, want: np.ndarray) -> str | None:
    """None if ``got`` matches ``want`` within the dtype's tolerance, else what differs."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"shape/dtype {got.shape} {got.dtype} != {want.shape} {want.dtype}"
    g, w = got.astype(np.float64), want.astype(np.float64)
    with np.errstate(all="ignore"):
        return _compare(g, w, want.dtype)


def _compare(g: np.ndarray, w: np.ndarray, dtype: np.dtype) -> str | None:
    nan_g, nan_w = np.isnan(g), np.isnan(w)
    if (nan_g != nan_w).any():
        return f"NaN at different places: got {g[nan_g != nan_w][:3]}, NumPy {w[nan_g != nan_w][:3]}"
    finfo = ml_dtypes.finfo(dtype)
    ok = nan_w | (g == w)  # exact, including equal infinities
    # TF flushes denormals to zero on CPU; allow a difference below the smallest normal number
    close = np.abs(g - w) <= RTOL[dtype] * np.abs(w) + 2 * float(finfo.smallest_normal)
    # at the edge of the dtype's range one side may round to inf and the other to the largest finite
    edge = np.isinf(g) ^ np.isinf(w)
    edge &= np.minimum(np.abs(g), np.abs(w)) >= float(finfo.max) * (1 - 4 * RTOL[dtype])
    bad = ~(ok | (np.isfinite(g) & np.isfinite(w) & close) | edge)
    if bad.any():
        return f"values differ: got {g[bad][:3]}, NumPy {w[bad][:3]}"
    return None


def check(case: Case, backend: str) -> tuple[str, str | None]:
    """Run one case; returns (outcome, problem): outcome "match" or "error", problem None if fine."""
    want = expected(case)
    return fuzzing.outcome(lambda: power_difference(case.x, case.y, case.pow, backend=backend).numpy(),
                           want is None, lambda got: compare(got, want))

def run(cases: int, seed: int, backends: Sequence[str] = ("cpp", "fallback"), progress: bool = True,
        instance_norm: bool = True) -> dict[str, Any]:
    """Run ``cases`` random cases on each backend; returns counts and the first problems.

    ``instance_norm``: also fuzz the fused ``InstanceNorm`` op, under the key ``"instance_norm"``.
    """
    backends_run = fuzzing.run_cases("PowerDifference", random_case, check, cases, seed, backends, progress)
    summary: dict[str, Any] = {"cases": cases, "seed": seed, "backends": backends_run}
    if instance_norm:
        summary["instance_norm"] = fuzz_instance_norm.run(cases, seed, backends, progress)
    return summary
