"""The workbench on any model: counts, memory, eager/function/XLA, grappler and the roofline as one report.

Library side of ``python -m tfbench.inspect`` and of ``tfbench.inspect_model`` (for notebooks).
One module per section: :mod:`.memory`, :mod:`.modes`, :mod:`.rewrites`, :mod:`.roofline`;
:mod:`.report` holds the result and its text; :mod:`.api` runs the stages and
:mod:`.tensorboard` writes them.  Loading what the user brings is :mod:`tfbench.models.load`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InspectReport", "inspect_model"]


def __getattr__(name: str) -> Any:
    if name == "inspect_model":
        from tfbench.inspection.api import inspect_model

        return inspect_model
    if name == "InspectReport":
        from tfbench.inspection.report import InspectReport

        return InspectReport
    raise AttributeError(f"module 'tfbench.inspection' has no attribute {name!r}")
