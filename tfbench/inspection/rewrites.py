"""What grappler makes of the model: op counts before/after, the passes that changed things, the fused nodes.

The same instruments ``python -m tfbench.vgg_graph`` and ``python -m tfbench.graphs show`` use
(:mod:`tfbench.rewriting.grappler`, :mod:`tfbench.reporting.graph_views`,
:mod:`tfbench.reporting.summaries`): one call of a fresh
``tf.function`` of the model gives the graph before grappler, after it, and the partition that
runs; then each pass is turned off alone and the post-grappler graph compared with the all-on one.

A pass that fails is only a line in TensorFlow's log (:mod:`tfbench.inspection.tf_log`): every
capture here runs with that log captured, the failures are named, and when one pass off makes the
failure go away, that pass is named as the one that breaks the graph.
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
    failures: dict[str, Any] = field(default_factory=dict)  # what failed in TensorFlow's log -> count, message
    failing_pass: str | None = None  # the pass whose absence makes the failures go away

    @property
    def unoptimised(self) -> bool:
        """Whether TensorFlow threw grappler's whole result away (the function runs as traced)."""
        return "multi-device function optimization" in self.failures

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
                "after": self.after, "fused": self.fused, "passes": self.passes, "failures": self.failures,
                "failing_pass": self.failing_pass, "unoptimised": self.unoptimised}


def grappler_report(call: Callable[[Any], Any], x: Any, *, ablate: bool = True,
                    passes: Sequence[str] = ABLATED) -> GrapplerReport:
    """Capture the graphs of ``tf.function(call)(x)`` and (``ablate``) what each pass in ``passes`` changes.

    Without ``ablate``, the passes are still turned off one by one when a failure was logged, until
    the one that causes it is found.
    """
    import tensorflow as tf

    from tfbench.inspection import tf_log
    from tfbench.reporting import graph_views
    from tfbench.reporting.summaries import op_counts
    from tfbench.rewriting import grappler

    with tf_log.capture() as log:
        graphs = grappler.capture(call, x)
    failures = tf_log.summarise(log.text).failures
    changes = graph_views.grappler_changes(graphs.pre_optimization, graphs.post_optimization)
    base = op_counts(graphs.post_optimization)
    rows, culprit = [], None
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # each capture retraces on purpose; the retracing warning is noise here
    try:
        for name in (passes if ablate or failures else ()):
            with tf_log.capture() as log:
                post = op_counts(grappler.capture(call, x, [name]).post_optimization)
            still = tf_log.summarise(log.text).failures
            if failures and not still and culprit is None:
                culprit = name
            if ablate:
                rows.append({"pass_off": name, "nodes": sum(post.values()), "nodes_all_on": sum(base.values()),
                             "difference_vs_all_on": grappler.count_diff(base, post), "failures": sorted(still)})
            elif culprit:
                break
    finally:
        logger.setLevel(level)
    return GrapplerReport(dict(changes.before), dict(changes.after), dict(changes.fused), rows, changes.markdown(),
                          graphs, failures, culprit)
