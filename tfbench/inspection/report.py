"""The report :func:`tfbench.inspect_model` returns: numbers as attributes, text, HTML and JSON.

Every section is optional (``quick`` fills only the counts and the memory estimate); what was not
measured is ``None`` and says so in the text, never a zero.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from tfbench.models.counting import Complexity


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n:g}"


@dataclass
class InspectReport:
    """Everything ``python -m tfbench.inspect`` found out about one model."""

    model: str
    source: str
    input_shape: tuple[int, ...]
    batch: int
    counts: Complexity | None  # per-layer counts (None: not a Keras model, no layers to count)
    params: int
    trainable_params: int
    non_trainable_params: int
    profiler: dict[str, Any] = field(default_factory=dict)
    memory: Any = None  # memory.MemoryReport
    modes: Any = None  # modes.ModesReport
    grappler: Any = None  # rewrites.GrapplerReport
    roofline: dict[str, Any] | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_dir: str | None = None
    json_path: str | None = None

    # -- the totals, as attributes
    def _total(self, key: str) -> int | None:
        return self.counts.total(key) if self.counts is not None else None

    @property
    def macs(self) -> int | None:
        """Multiply-accumulates of one example (counted layers)."""
        return self._total("macs")

    @property
    def mults(self) -> int | None:
        """All multiplications of one example."""
        return self._total("mults")

    @property
    def adds(self) -> int | None:
        """All additions of one example."""
        return self._total("adds")

    @property
    def neurons(self) -> int | None:
        """Outputs of the weighted-sum layers (conv, dense, attention) for one example."""
        return self._total("neurons")

    @property
    def profiler_flops(self) -> int | None:
        """TensorFlow's profiler count of the inference graph (batch 1)."""
        return self.profiler.get("total_flops") if self.profiler else None

    @property
    def uncounted(self) -> list[str]:
        """Layers (``name (Kind)``) whose arithmetic has no counting rule: not in the totals."""
        return self.counts.uncounted() if self.counts is not None else []

    def to_json(self) -> dict[str, Any]:
        """Every number, as plain JSON types."""
        roof = None
        if self.roofline:
            roof = {k: v for k, v in self.roofline.items() if k != "points"}
        return {"model": self.model, "source": self.source, "input_shape": list(self.input_shape), "batch": self.batch,
                "params": self.params, "trainable_params": self.trainable_params,
                "non_trainable_params": self.non_trainable_params, "macs": self.macs, "mults": self.mults,
                "adds": self.adds, "neurons": self.neurons, "uncounted": self.uncounted,
                "counts": self.counts.to_json() if self.counts is not None else None, "profiler": self.profiler,
                "memory": self.memory.to_json() if self.memory is not None else None,
                "modes": self.modes.to_json() if self.modes is not None else None,
                "grappler": self.grappler.to_json() if self.grappler is not None else None,
                "roofline": roof, "notes": self.notes, "run_dir": self.run_dir}

    # -- text
    def sections(self) -> dict[str, str]:
        """Section title -> markdown text (the terminal prints them, TensorBoard shows them as Text cards)."""
        from tfbench.inspection import render

        return render.sections(self)

    def __repr__(self) -> str:
        macs = f"{_si(self.macs)} MACs" if self.macs is not None else "MACs not counted"
        return (f"<InspectReport {self.model} ({self.source}) input {'x'.join(map(str, self.input_shape))}: "
                f"{self.params:,} params ({self.trainable_params:,} trainable), {macs}"
                + (f", uncounted: {', '.join(self.uncounted)}" if self.uncounted else "") + ">")

    def __str__(self) -> str:
        return "\n\n".join(f"== {title} ==\n{text}" for title, text in self.sections().items())

    def _repr_html_(self) -> str:
        parts = [f"<h3>{html.escape(self.model)}</h3>"]
        for title, text in self.sections().items():
            parts.append(f"<h4>{html.escape(title)}</h4><pre>{html.escape(text)}</pre>")
        return "\n".join(parts)
