"""Rename the nodes of a function's graphs so TensorBoard's Graphs dashboard reads like the diagram.

TensorBoard groups nodes by the ``/`` in their names.  A function's graphs name their inputs
after the trace (``vgg19_conv1_1_conv2d_readvariableop_resource``, all at the top level), and
grappler keeps the old name of a node it rewrote (a ``_FusedConv2D`` is still called ``Relu``).
The functions here only rename (the ops, edges and attributes are untouched):

- a captured variable's input becomes ``<variable name>/resource`` and its read ``<variable name>/read``,
  so each layer's weights sit inside its own box (``vgg19/block1/conv1_1/weights``);
- the explicit inputs and the outputs get readable names (``images``, ``logits``);
- a fused node is named after what it fused: ``conv1_1/FusedConv2D+BiasAdd+Relu``.

:func:`grappler_changes` then says what grappler did, op by op, for a Text card.
"""

from __future__ import annotations

import collections
import posixpath
from dataclasses import dataclass, field
from typing import Any, Sequence

import tensorflow as tf

GraphDef = tf.compat.v1.GraphDef


def rename(graph_def: GraphDef, mapping: dict[str, str]) -> GraphDef:
    """A copy of ``graph_def`` with nodes renamed by ``mapping`` and every input reference updated."""
    out = GraphDef()
    out.CopyFrom(graph_def)

    def ref(name: str) -> str:
        control = name.startswith("^")
        base, _, port = name.lstrip("^").partition(":")
        base = mapping.get(base, base)
        return ("^" if control else "") + base + (":" + port if port else "")

    for node in out.node:
        node.name = mapping.get(node.name, node.name)
        inputs = [ref(i) for i in node.input]
        del node.input[:]
        node.input.extend(inputs)
    return out


def _unique(name: str, taken: set[str], old: str | None = None) -> str:
    if name == old:
        return name
    candidate, n = name, 1
    while candidate in taken:
        candidate = f"{name}_{n}"
        n += 1
    taken.add(candidate)
    return candidate


def _variable_names(handles: Sequence[Any], variables: Sequence[tf.Variable]) -> list[str | None]:
    """The variable behind each captured handle (``None`` for captures that are not variables)."""
    by_handle = {id(v.handle): v.name.split(":")[0] for v in variables}
    return [by_handle.get(id(h)) for h in handles]


def _scope_reads(graph_def: GraphDef, resources: dict[str, str], taken: set[str]) -> dict[str, str]:
    """``ReadVariableOp`` of a renamed resource -> ``<variable>/read`` (what TF1 graphs called it)."""
    mapping = {}
    for node in graph_def.node:
        if node.op == "ReadVariableOp" and node.input and node.input[0] in resources:
            mapping[node.name] = _unique(resources[node.input[0]] + "/read", taken)
    return mapping


def function_arg_names(concrete: Any) -> list[str]:
    """Names for a concrete function's inputs by position: its signature's names, then its variables'."""
    explicit = [t.name.split(":")[0] for t in concrete.inputs[: len(concrete.inputs) - len(concrete.captured_inputs)]]
    names = _variable_names(concrete.captured_inputs, concrete.graph.variables)
    return explicit + [f"{n}/resource" if n else f"captured_{i}" for i, n in enumerate(names)]


def readable_traced_graph(concrete: Any, output_names: Sequence[str] = ("output",)) -> GraphDef:
    """The ``FuncGraph`` of ``concrete`` (what ``tf.summary.graph`` draws) with readable names.

    Captured variables become ``<variable>/resource`` + ``<variable>/read``; the function's
    returned ``Identity`` nodes are renamed to ``output_names``; the graph's bare control
    output ``NoOp`` (nothing reads it) is left out so the top level holds only inputs, the
    model's scope and outputs.
    """
    graph_def = concrete.graph.as_graph_def()
    names = _variable_names([ext for ext, _ in concrete.graph.captures], concrete.graph.variables)
    taken = {n.name for n in graph_def.node}
    mapping: dict[str, str] = {}
    for (_, internal), var in zip(concrete.graph.captures, names):
        if var:
            mapping[internal.op.name] = _unique(var + "/resource", taken)
    mapping.update(_scope_reads(graph_def, {k: v.removesuffix("/resource") for k, v in mapping.items()}, taken))
    for tensor, name in zip(concrete.graph.outputs, _output_names(output_names, len(concrete.graph.outputs))):
        mapping[tensor.op.name] = _unique(name, taken, tensor.op.name)
    out = rename(graph_def, mapping)
    keep = [n for n in out.node if not (n.op == "NoOp" and "/" not in n.name)]
    dropped = {n.name for n in out.node} - {n.name for n in keep}
    del out.node[:]
    out.node.extend(keep)
    for node in out.node:
        inputs = [i for i in node.input if i.lstrip("^") not in dropped]
        del node.input[:]
        node.input.extend(inputs)
    return out


def _output_names(names: Sequence[str], count: int) -> list[str]:
    if len(names) >= count:
        return list(names[:count])
    return [f"{names[0]}_{i}" for i in range(count)]


def readable_function_graph(graph_def: GraphDef, arg_names: Sequence[str],
                            output_names: Sequence[str] = ("output",)) -> GraphDef:
    """A graph of the runtime (before/after grappler, or a partition) with readable names.

    ``_Arg`` nodes are named by their ``index`` from ``arg_names`` (:func:`function_arg_names`),
    ``_Retval`` nodes from ``output_names``, variable reads ``<variable>/read``, and fused nodes
    after what they fused (:func:`fusion_names`).
    """
    taken = {n.name for n in graph_def.node}
    mapping: dict[str, str] = {}
    retvals = [n for n in graph_def.node if n.op == "_Retval"]
    outs = _output_names(output_names, len(retvals))
    for node in graph_def.node:
        index = node.attr["index"].i
        if node.op == "_Arg" and index < len(arg_names):
            mapping[node.name] = _unique(arg_names[index], taken, node.name)
        elif node.op == "_Retval" and index < len(outs):
            mapping[node.name] = _unique(outs[index], taken, node.name)
    resources = {old: new for old, new in mapping.items() if new.endswith("/resource")}
    mapping.update(_scope_reads(graph_def, {k: v.removesuffix("/resource") for k, v in resources.items()}, taken))
    mapping.update(fusion_names(graph_def, taken))
    return rename(graph_def, mapping)


def fused_label(node: Any) -> str | None:
    """``_FusedConv2D`` with ``fused_ops [BiasAdd, Relu]`` -> ``FusedConv2D+BiasAdd+Relu``; None if not fused."""
    if "Fused" not in node.op or not node.op.startswith("_"):
        return None
    parts = [node.op.lstrip("_")]
    if "fused_ops" in node.attr:
        parts += [op.decode() for op in node.attr["fused_ops"].list.s]
    elif node.attr["activation_mode"].s and node.attr["activation_mode"].s != b"Identity":
        parts.append(node.attr["activation_mode"].s.decode())
    return "+".join(parts)


def fusion_names(graph_def: GraphDef, taken: set[str] | None = None) -> dict[str, str]:
    """Old name -> ``<scope>/<fused label>`` for every fused node (``vgg19/block1/conv1_1/Relu`` ->
    ``vgg19/block1/conv1_1/FusedConv2D+BiasAdd+Relu``)."""
    taken = {n.name for n in graph_def.node} if taken is None else taken
    mapping = {}
    for node in graph_def.node:
        label = fused_label(node)
        if label:
            scope = posixpath.dirname(node.name)
            mapping[node.name] = _unique(f"{scope}/{label}" if scope else label, taken)
    return mapping


# ---------------------------------------------------------------- what grappler did

@dataclass
class GrapplerChanges:
    """Op counts before and after grappler, and the fused nodes by label."""

    before: collections.Counter
    after: collections.Counter
    fused: collections.Counter = field(default_factory=collections.Counter)  # label -> count

    @property
    def removed(self) -> int:
        """How many nodes fewer the optimised graph has."""
        return sum(self.before.values()) - sum(self.after.values())

    def rows(self) -> list[tuple[str, int, int, str]]:
        """``(op, before, after, change)`` for every op whose count changed, then the unchanged ones."""
        ops = sorted(set(self.before) | set(self.after),
                     key=lambda op: (self.before[op] == self.after[op], -max(self.before[op], self.after[op]), op))
        return [(op, self.before[op], self.after[op],
                 f"{self.after[op] - self.before[op]:+d}" if self.after[op] != self.before[op] else "")
                for op in ops]

    def markdown(self) -> str:
        """The before/after table with a total line and one sentence per kind of change."""
        from tfbench.reporting.tables import markdown_table

        total = ("**total**", sum(self.before.values()), sum(self.after.values()), f"{-self.removed:+d}")
        lines = [markdown_table(["op", "before grappler", "after grappler", "change"], self.rows() + [total]), ""]
        for label, n in sorted(self.fused.items()):
            lines.append(f"- {n} node(s) `{label}`: {len(label.split('+'))} ops fused into one kernel")
        if self.removed >= 0:
            lines.append(f"- {self.removed} node(s) fewer in all (fused, pruned or folded away)")
        else:
            lines.append(f"- {-self.removed} node(s) more in all (function calls inlined)")
        return "\n".join(lines)


def grappler_changes(before: GraphDef, after: GraphDef) -> GrapplerChanges:
    """Compare a function graph before and after grappler (op counts, fused nodes by label)."""
    fused = collections.Counter(label for node in after.node if (label := fused_label(node)))
    return GrapplerChanges(collections.Counter(n.op for n in before.node),
                           collections.Counter(n.op for n in after.node), fused)


def top_level(graph_def: GraphDef) -> list[str]:
    """The names TensorBoard draws at the top level: the first component of every node name, in order."""
    return list(dict.fromkeys(n.name.split("/")[0] for n in graph_def.node))
