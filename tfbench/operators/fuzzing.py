"""The loop every fuzz harness of the custom ops shares: the same seeded random cases on each backend.

Each harness (:mod:`.fuzz` for PowerDifference, :mod:`.fuzz_instance_norm`, :mod:`.conv_fuzz`) supplies
``random_case(rng)`` (a case with ``describe()``) and ``check(case, backend) -> (outcome, problem)``,
outcome ``"match"`` or ``"error"`` (the op refused, as expected or not) and problem ``None`` when fine;
each ``check`` runs its op through :func:`outcome`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from tfbench.plumbing.errors import first_line

#: problems kept per backend (all are counted)
KEPT_PROBLEMS = 20


def outcome(call: Callable[[], Any], expected_error: bool | str | None,
            compare: Callable[[Any], str | None]) -> tuple[str, str | None]:
    """Run one case's op: ``("error", problem)`` if it raised ``InvalidArgumentError``, else ``("match", problem)``.

    ``expected_error`` says the case must be refused (a string names why); ``compare(result)`` checks a result.
    """
    try:
        got = call()
    except tf.errors.InvalidArgumentError as err:
        return "error", None if expected_error else f"unexpected InvalidArgumentError: {first_line(err, 200)}"
    if expected_error:
        why = f" ({expected_error})" if isinstance(expected_error, str) else ""
        return "match", f"expected InvalidArgumentError{why}, got a result"
    return "match", compare(got)


def run_cases(label: str, random_case: Callable[[np.random.Generator], Any],
              check: Callable[[Any, str], tuple[str, str | None]], cases: int, seed: int,
              backends: Sequence[str], progress: bool = True) -> dict[str, dict[str, Any]]:
    """``{backend: {"match", "error", "problems", "first_problems"}}`` over ``cases`` cases drawn from ``seed``."""
    results: dict[str, dict[str, Any]] = {}
    for backend in backends:
        rng = np.random.default_rng(seed)  # the same cases for every backend
        counts = {"match": 0, "error": 0, "problems": 0}
        problems: list[str] = []
        for _ in tqdm(range(cases), desc=f"fuzz {label} {backend}", disable=None if progress else True, leave=False):
            case = random_case(rng)
            outcome, problem = check(case, backend)
            counts[outcome] += 1
            if problem is not None:
                counts["problems"] += 1
                if len(problems) < KEPT_PROBLEMS:
                    problems.append(f"{case.describe()}: {problem}")
        results[backend] = {**counts, "first_problems": problems}
    return results
