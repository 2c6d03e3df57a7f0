"""Fuzz TfbenchConv2D against ``tf.nn.conv2d``: random shapes, strides, paddings and algorithms.

Every case either matches ``tf.nn.conv2d`` (within float32 tolerance, scaled by the magnitudes
summed) or raises ``tf.errors.InvalidArgumentError`` exactly when it should: input channels that
do not match the filter's, a ``VALID`` window larger than the image, Winograd on a filter that is not
3x3 or a stride that is not 1, a stride below 1 or over the batch or channels, a tensor that is not
4-D.  Shapes are small (batch 0 to 3, images 1 to 12 pixels a side, 1 to 20 channels, filters 1x1 to
5x5, strides 1 to 3) so that every algorithm, the loop nest included, runs thousands of cases.

Run through ``python -m tfbench.ops fuzz --op conv2d`` (a subprocess in the tests, so that a crash of
the C++ kernel shows as a failed exit code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from tfbench.operators import conv2d as conv
from tfbench.operators import fuzzing


@dataclass
class ConvFuzzCase:
    """One case: the inputs and attributes, and the error expected (None: a result equal to tf.nn.conv2d)."""

    x: np.ndarray
    w: np.ndarray
    strides: list[int]
    padding: str
    algorithm: str
    expected_error: str | None

    def describe(self) -> str:
        return (f"input {list(self.x.shape)} filter {list(self.w.shape)} strides {self.strides} {self.padding} "
                f"{self.algorithm}")


def random_case(rng: np.random.Generator) -> ConvFuzzCase:
    """Draw one case; about a quarter of them are invalid in one way."""
    n, h, w = int(rng.integers(0, 4)), int(rng.integers(1, 13)), int(rng.integers(1, 13))
    c, k = int(rng.integers(1, 21)), int(rng.integers(1, 21))
    kh, kw = (3, 3) if rng.random() < 0.4 else (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    sh, sw = (1, 1) if rng.random() < 0.5 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = "SAME" if rng.random() < 0.5 else "VALID"
    algorithm = conv.ALGORITHMS[int(rng.integers(0, len(conv.ALGORITHMS)))]
    strides = [1, sh, sw, 1]
    x_shape, w_shape = [n, h, w, c], [kh, kw, c, k]
    error = None
    if rng.random() < 0.25:
        broken = int(rng.integers(0, 4))
        if broken == 0:
            w_shape[2] = c + int(rng.integers(1, 4))
            error = "channels"
        elif broken == 1:
            strides = [int(rng.integers(2, 3)), sh, sw, 1] if rng.random() < 0.5 else [1, 0, sw, 1]
            error = "strides"
        elif broken == 2:
            x_shape = x_shape[1:]
            error = "4-D"
        else:
            algorithm, w_shape[0] = "winograd", 5
            error = "winograd"
    if error is None and padding == "VALID" and (h < kh or w < kw):
        error = "VALID"
    if error is None and algorithm == "winograd" and ((kh, kw) != (3, 3) or (sh, sw) != (1, 1)):
        error = "winograd"
    x = rng.standard_normal(x_shape).astype(np.float32)
    weights = rng.standard_normal(w_shape).astype(np.float32)
    return ConvFuzzCase(x, weights, strides, padding, algorithm, error)


def check(case: ConvFuzzCase, backend: str) -> tuple[str, str | None]:
    """Run one case; returns (outcome, problem): outcome "match" or "error", problem None if fine."""
    return fuzzing.outcome(lambda: conv.conv2d(case.x, case.w, case.strides, case.padding, algorithm=case.algorithm,
                                               backend=backend).numpy(),
                           case.expected_error, lambda got: compare(case, got))


def compare(case: ConvFuzzCase, got: np.ndarray) -> str | None:
    """None if ``got`` equals ``tf.nn.conv2d`` on the case within float tolerance, else what differs."""
    if case.x.shape[0] == 0:  # tf.nn.conv2d returns its empty input unchanged (wrong channels): compare the shape
        oh, ow = (conv.same_padding(size, k, s, case.padding)[0]
                  for size, k, s in zip(case.x.shape[1:3], case.w.shape[:2], case.strides[1:3]))
        want_shape = (0, oh, ow, case.w.shape[3])
        return None if got.shape == want_shape else f"shape {got.shape} != {want_shape}"
    want = tf.nn.conv2d(case.x, case.w, case.strides, case.padding).numpy()
    if got.shape != want.shape:
        return f"shape {got.shape} != tf.nn.conv2d's {want.shape}"
    scale = np.sqrt(np.prod(case.w.shape[:3])) * max(1.0, float(np.abs(case.x).max(initial=0)) *
                                                     float(np.abs(case.w).max(initial=0)))
    worst = float(np.abs(got - want).max(initial=0))
    if worst > 2e-5 * scale:
        return f"values differ by {worst:.3g} (tolerance {2e-5 * scale:.3g})"
    return None


def run(cases: int, seed: int, backends: Sequence[str] = ("cpp", "fallback"), progress: bool = True) -> dict[str, Any]:
    """Run ``cases`` random cases on each backend; returns counts and the first problems."""
    backends_run = fuzzing.run_cases("conv2d", random_case, check, cases, seed, backends, progress)
    summary: dict[str, Any] = {"op": conv.OP_NAME, "cases": cases, "seed": seed, "backends": backends_run}
    return summary
