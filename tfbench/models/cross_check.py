"""The cross-check of the counts: the model's own traced graph, and TensorFlow's profiler on the same ops.

Two independent references for the per-layer counts of :mod:`tfbench.models.counting`
(exercises 3.1, 3.2):

- **the graph**: the model's inference ``tf.function`` at batch 1, counted op by op by
  :mod:`tfbench.models.graph_count`, function bodies and loop iterations included.  Its MACs must
  equal the rules' total: both count every multiply-accumulate.
- **TensorFlow's profiler** (``tf.compat.v1.profiler``, 2 FLOPs per multiply-add) on the graph it
  can read.  It counts only the ops of the top graph, and not every op type: it counts ``Einsum`` as
  0, does not enter a function call (Keras runs a grouped convolution inside one) and does not
  repeat a loop body.  So it is compared on the op types it counts, in the graph it sees, and
  everything else is named as a blind spot with the MACs it hides, never as an alarming percentage.
"""

from __future__ import annotations

from typing import Any, Sequence

#: weights (elements) up to which a graph with function calls is frozen for the profiler: freezing copies
#: every weight into the graph, and a 350 M parameter model would need gigabytes for it
FREEZE_LIMIT = 100_000_000


def _profile(graph: Any) -> tuple[int, dict[str, int]]:
    import tensorflow as tf

    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # the v1 profiler's own deprecation notices
    try:
        info = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                             options=options)
    finally:
        tf.get_logger().setLevel(level)
    by_op: dict[str, int] = {}
    stack = list(info.children)  # the "op" view nests each op type under the previous one
    while stack:
        node = stack.pop()
        if node.float_ops:
            by_op[node.name] = by_op.get(node.name, 0) + int(node.float_ops)
        stack.extend(node.children)
    return int(info.total_float_ops), dict(sorted(by_op.items(), key=lambda kv: -kv[1]))


def profiler_flops(call: Any, input_shape: Sequence[int], dtype: str = "float32") -> dict[str, Any]:
    """TensorFlow's profiler count of the traced inference graph of ``call`` at batch 1, and the graph's own count.

    Returns ``total_flops`` and ``by_op`` (the profiler's), ``graph`` (MACs of the whole graph by op
    type, function bodies and loops included, from :mod:`tfbench.models.graph_count`) and
    ``visible`` (MACs by op type in the graph the profiler read, its top level only).
    """
    import tensorflow as tf

    from tfbench.models.graph_count import count_graph

    spec = tf.TensorSpec((1, *input_shape), dtype)
    concrete = tf.function(call, autograph=False).get_concrete_function(spec)
    whole = count_graph(concrete.graph)
    graph = concrete.graph
    inlined = False
    weights = sum(int(v.shape.num_elements() or 0) for v in concrete.variables)
    if weights <= FREEZE_LIMIT and any(op.type in ("PartitionedCall", "StatefulPartitionedCall")
                                       for op in graph.get_operations()):
        # a SavedModel signature or a tf.Module calls its function: the profiler sees only the call, so
        # inline it (freezing inlines function calls; the weights become constants of this copy only)
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        try:
            graph = convert_variables_to_constants_v2(concrete).graph
            inlined = True
        except (ValueError, TypeError, tf.errors.OpError):
            pass
    total, by_op = _profile(graph)
    seen = count_graph(graph, place="top", prune=False)  # every op, dead or not, as the profiler counts
    live = count_graph(graph, place="top")
    ops = {op.type for op in graph.get_operations()}
    return {"total_flops": total, "by_op": by_op,
            "conv_matmul_flops": sum(v for k, v in by_op.items() if k.startswith(("Conv2D", "MatMul"))),
            "graph_ops": sorted(ops), "calls_inlined": inlined,
            "graph": {"macs": whole.macs, "mults": whole.mults, "adds": whole.adds,
                      "macs_by_op": dict(whole.macs_by_op),
                      "macs_by_place": {f"{place}:{op}": v for (place, op), v in whole.macs_by_place.items()},
                      "unknown_ops": dict(whole.unknown_ops), "notes": whole.notes},
            "visible": seen.macs_at("top"), "visible_live": live.macs_at("top")}


def cross_check(our_macs: int | None, profiler: dict[str, Any]) -> dict[str, Any]:
    """Our MACs against the graph's, and the graph's against the profiler's on the ops the profiler counts.

    Returns ``graph_macs``, ``rules_vs_graph`` (relative difference, None when ours is not known),
    ``compared_ops`` (op type -> [graph MACs, profiler FLOPs / 2]) over the op types the profiler
    counts in the graph it sees, ``profiler_vs_graph`` (relative difference on those), and
    ``blind_spots`` (sentences, each with the MACs the profiler cannot see).
    """
    graph = profiler.get("graph", {})
    graph_macs = graph.get("macs")
    by_op = profiler.get("by_op", {})
    visible = profiler.get("visible", {})
    compared = {op: [macs, by_op[op] / 2] for op, macs in visible.items() if by_op.get(op)}
    ours, theirs = sum(v[0] for v in compared.values()), sum(v[1] for v in compared.values())
    blind = [f"the profiler counts {op} as 0: {macs:,} MACs it cannot see"
             for op, macs in sorted(visible.items()) if macs and not by_op.get(op)]
    live = profiler.get("visible_live", visible)
    dead = sum(visible.values()) - sum(live.values())
    hidden = (graph_macs or 0) - sum(live.values())
    places = graph.get("macs_by_place", {})
    in_loops = sum(v for k, v in places.items() if k.startswith("loop:"))
    in_functions = sum(v for k, v in places.items() if k.startswith("function:"))
    if hidden > 0:
        parts = []
        if in_loops:
            parts.append(f"{in_loops:,} in loop bodies, every iteration")
        if in_functions:
            parts.append(f"{min(in_functions, hidden):,} inside function calls (Keras runs a grouped convolution "
                         "as a compiled function)")
        detail = f" ({'; '.join(parts)})" if parts else ""
        blind.append(f"the profiler does not enter loop bodies or function calls: {hidden:,} MACs it "
                     f"cannot see{detail}")
    if dead > 0:
        blind.append(f"the profiler also counts {dead:,} MACs of dead code that never runs (grappler prunes it: "
                     "Keras traces one recurrent step outside the loop for its shapes)")
    return {"our_macs": our_macs, "graph_macs": graph_macs,
            "rules_vs_graph": (abs(our_macs - graph_macs) / graph_macs if our_macs is not None and graph_macs
                               else None),
            "compared_ops": compared, "graph_on_compared": ours, "profiler_on_compared": theirs,
            "profiler_vs_graph": abs(ours - theirs) / theirs if theirs else None, "blind_spots": blind,
            "graph_unknown_ops": graph.get("unknown_ops", {})}
