"""What grappler makes of the model: op counts before/after, the passes that changed things, the fused nodes.

The same instruments ``python -m tfbench.vgg_graph`` and ``python -m tfbench.graphs show`` use
(:mod:`tfbench.rewriting.grappler`, :mod:`tfbench.reporting.graph_views`,
:mod:`tfbench.reporting.summaries`): one call of a fresh
``tf.function`` of the model gives the graph before grappler, after it, and the partition that
runs; then each pass is turned off alone and the post-grappler graph compared with the all-on one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

#: the passes turned off one at a time (layout only acts on GPUs; loops and debug stripping rarely matter).
ABLATED = ("remapping", "constfold", "arithmetic", "pruning", "dependency", "function", "shape")


@dataclass
class GrapplerReport:
    """Op counts before/after, fused nodes by label, and what each pass changes (empty when not ablated)."""

    before: dict[str, int]
    after: dict[str, int]
    fused: dict[str, int]
    passes: list[dict[str, Any]] = field(default_factory=list)
    markdown: str = ""
    graphs: Any = None  # the FunctionGraphs, for the TensorBoard runs (not in JSON)

    @property
    def nodes_before(self) -> int:
        """Nodes in the graph before grappler."""
        return sum(self.before.values())

    @property
    def nodes_after(self) -> int:
        """Nodes in the graph after grappler."""
        return sum(self.after.values())

    def changed_passes(self) -> list[dict[str, Any]]:
        """The passes whose absence changes the optimised graph."""
        return [p for p in self.passes if p["difference_vs_all_on"] != "(same)"]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (the graphs themselves are TensorBoard runs)."""
        return {"nodes_before": self.nodes_before, "nodes_after": self.nodes_after, "before": self.before,
                "after": self.after, "fused": self.fused, "passes": self.passes}


def grappler_report(call: Callable[[Any], Any], x: Any, *, ablate: bool = True,
                    passes: Sequence[str] = ABLATED) -> GrapplerReport:
    """Capture the graphs of ``tf.function(call)(x)`` and (``ablate``) what each pass in ``passes`` changes."""
    from tfbench.reporting import graph_views
    from tfbench.rewriting import grappler

    graphs = grappler.capture(call, x)
    changes = graph_views.grappler_changes(graphs.pre_optimization, graphs.post_optimization)
    rows = grappler.ablate(call, x, list(passes)) if ablate else []
    return GrapplerReport(dict(changes.before), dict(changes.after), dict(changes.fused), rows, changes.markdown(),
                          graphs)
