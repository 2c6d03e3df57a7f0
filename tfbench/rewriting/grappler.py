"""Grappler's passes as switches: turn them off for a block, capture the graphs, say what each pass did.

Library side of ``python -m tfbench.graphs`` (ex. 5.10), shared with the main job, which
shows the same before/after tables on its TensorBoard Text cards.
"""

from __future__ import annotations

import collections
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

# TensorFlow loads inside the functions: commands import this module before parsing their arguments.
from tfbench.plumbing.errors import UserError

if TYPE_CHECKING:
    from tfbench.reporting.summaries import FunctionGraphs

# CLI name -> (tf.config.optimizer option, value that turns the pass OFF)
PASSES: dict[str, tuple[str, bool]] = {
    "remapping": ("remapping", False),            # op fusion: Conv2D+BiasAdd+Relu -> _FusedConv2D, ...
    "constfold": ("constant_folding", False),     # evaluate constant subgraphs at optimisation time
    "arithmetic": ("arithmetic_optimization", False),  # algebraic rewrites, unary-op composition
    "layout": ("layout_optimizer", False),        # NHWC <-> NCHW transposes (GPU)
    "pruning": ("disable_model_pruning", True),   # model_pruner: drop Identity/NoOp nodes nothing needs
    "dependency": ("dependency_optimization", False),  # remove redundant control dependencies
    "loop": ("loop_optimization", False),         # hoist loop invariants
    "function": ("function_optimization", False),  # inline and specialise function calls
    "shape": ("shape_optimization", False),       # simplify Shape/Size computations
    "debug_stripper": ("debug_stripper", False),  # (off by default) strip Assert/Print
    "implementation_selector": ("implementation_selector", False),  # pick CPU/GPU function variants
    "meta": ("disable_meta_optimizer", True),     # all of grappler
}

@contextlib.contextmanager
def grappler_options(**options: Any) -> Iterator[None]:
    """Set ``tf.config.optimizer`` experimental options for the block, then restore the previous ones.

    The public API can only add or overwrite keys, not go back to "unset" (which is not the
    same as ON for every pass), so the context's option dict is saved and put back as it was.
    Functions instantiated inside the block keep their graphs; call them inside it to time them.
    """
    import tensorflow as tf
    from tensorflow.python.eager import context

    ctx = context.context()
    saved = dict(ctx._optimizer_experimental_options)  # no public getter for the raw, unset-aware dict
    tf.config.optimizer.set_experimental_options(options)
    try:
        yield
    finally:
        ctx._optimizer_experimental_options = saved
        ctx._thread_local_data.function_call_options = None  # what set_experimental_options does too


def disabled_options(names: Sequence[str]) -> dict[str, bool]:
    """The option dict that turns off the named passes (CLI names from :data:`PASSES`)."""
    options = {}
    for name in names:
        if name not in PASSES:
            raise UserError(f"unknown grappler pass {name!r}; choose from {', '.join(PASSES)}")
        key, off = PASSES[name]
        options[key] = off
    return options


def parse_pass_list(text: str) -> list[str]:
    """``"remapping,constfold"`` -> ``["remapping", "constfold"]`` (validated)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    disabled_options(names)
    return names


BOOKKEEPING_OPS = frozenset({"_Arg", "_Retval", "Const", "ReadVariableOp", "NoOp", "Identity"})


def count_table(graphs: FunctionGraphs) -> list[tuple[str, int, int, int]]:
    """``(op, pre, post, partition)`` rows, compute ops first, then by descending pre count."""
    from tfbench.reporting.summaries import op_counts

    pre, post = op_counts(graphs.pre_optimization), op_counts(graphs.post_optimization)
    part: collections.Counter = collections.Counter()
    for g in graphs.partitions:
        part.update(op_counts(g))
    ops = set(pre) | set(post) | set(part)
    rows = [(op, pre[op], post[op], part[op]) for op in ops]
    rows.sort(key=lambda r: (r[0] in BOOKKEEPING_OPS, -max(r[1:]), r[0]))
    return rows


def format_count_table(rows: Sequence[tuple[str, int, int, int]]) -> str:
    """The rows as text, with a marker on the ops grappler changed and a total line."""
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"{'op':{width}s}  {'pre':>5s}  {'post':>5s}  {'partition':>9s}", "-" * (width + 27)]
    for op, pre, post, part in rows:
        mark = "  <- changed" if pre != post or post != part else ""
        lines.append(f"{op:{width}s}  {pre:5d}  {post:5d}  {part:9d}{mark}")
    totals = [sum(r[i] for r in rows) for i in (1, 2, 3)]
    lines.append("-" * (width + 27))
    lines.append(f"{'total':{width}s}  {totals[0]:5d}  {totals[1]:5d}  {totals[2]:9d}")
    return "\n".join(lines)


def count_diff(before: collections.Counter, after: collections.Counter) -> str:
    """``"-Conv2D 1, +_FusedConv2D 1"``: how ``after`` differs from ``before``, or ``"(same)"``."""
    parts = []
    for op in sorted(set(before) | set(after)):
        delta = after[op] - before[op]
        if delta:
            parts.append(f"{'+' if delta > 0 else '-'}{op} {abs(delta)}")
    return ", ".join(parts) or "(same)"


def capture(call: Callable[[Any], Any], inputs: Any, disable: Sequence[str] = ()) -> FunctionGraphs:
    """The three graphs of one call of a fresh ``tf.function(call)`` on ``inputs``, with passes disabled."""
    import tensorflow as tf

    from tfbench.reporting.summaries import capture_function_graphs

    with grappler_options(**disabled_options(disable)):
        return capture_function_graphs(tf.function(call), inputs)


def ablate(call: Callable[[Any], Any], inputs: Any, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Capture once with everything on, then once per pass with only that pass off.

    Each row says how the post-grappler graph differs from the all-on graph when the pass is
    off, i.e. what that pass contributes (``+Conv2D 1`` with remapping off: remapping removes it).
    """
    import tensorflow as tf

    from tfbench.reporting.summaries import op_counts

    base = op_counts(capture(call, inputs).post_optimization)
    rows = []
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # each capture retraces on purpose; the retracing warning is noise here
    try:
        posts = {name: op_counts(capture(call, inputs, [name]).post_optimization)
                 for name in names or [n for n in PASSES if n != "debug_stripper"]}
    finally:
        logger.setLevel(level)
    for name, post in posts.items():
        rows.append({"pass_off": name, "nodes": sum(post.values()), "nodes_all_on": sum(base.values()),
                     "difference_vs_all_on": count_diff(base, post)})
    return rows


def write_runs(run: Path, graphs: FunctionGraphs, ablation: Sequence[dict[str, Any]] = (),
               names: Mapping[str, str] | None = None) -> list[Path]:
    """Write the graph before grappler, after it and each partition as its own TensorBoard run under ``run``.

    Run folders are ``pre``, ``post``, ``partition`` unless ``names`` renames them (``{"pre": "graph",
    "post": "optimized"}``).  The post-grappler run also gets a Text card: the op counts before/after
    grappler (and, with ``ablation``, what each pass changes); fused nodes are named after what they fused.
    """
    from tfbench.reporting import graph_views
    from tfbench.reporting.summaries import markdown_table, write_graph, write_text

    names = dict(names or {})
    written = []
    for label, graph_def in graphs.readable().items():
        write_graph(run / names.get(label, label), graph_def)
        written.append(run / names.get(label, label))
    texts = {"grappler/op_counts": "op counts before and after grappler (fused nodes are named after what they "
             "fused)\n\n" + graph_views.grappler_changes(graphs.pre_optimization, graphs.post_optimization).markdown()}
    if ablation:
        texts["grappler/passes"] = ("the post-grappler graph with one pass off, compared with all passes on\n\n"
                                    + markdown_table(list(ablation[0]), [list(r.values()) for r in ablation]))
    write_text(run / names.get("post", "post"), texts)
    return written
