"""Counting from a traced graph: multiply-accumulates of the ops themselves, inside function calls and loops.

The layer rules of :mod:`tfbench.models.layer_rules` know what a ``Conv2D`` or an ``LSTM`` computes.
A layer nobody wrote a rule for (a user's own ``call``) still runs TensorFlow ops, and those ops
have shapes: this module traces the layer (or a whole model) with ``tf.function`` and counts its
graph op by op, as fvcore's ``FlopCountAnalysis`` counts a traced PyTorch graph through a table of
per-op handles (exercises 3.1, 3.2: the same conventions as the rules).

- MACs: ``MatMul``, ``BatchMatMul*`` and ``Einsum`` by their operand shapes; ``Conv2D``/``Conv3D``,
  ``DepthwiseConv2dNative`` and the transposed convolutions (``Conv*BackpropInput``) by their
  output and filter shapes.  A sum of ``K`` products takes ``K - 1`` additions.
- Elementwise arithmetic: one multiplication per output element of ``Mul``/``RealDiv``/``Square``,
  one addition per output element of ``AddV2``/``Sub``/``BiasAdd``, ``n - 1`` of ``AddN``, and
  input minus output elements of a ``Sum``/``Mean``, ``window - 1`` additions and one division per
  output of an ``AvgPool``; integer arithmetic (loop counters, shapes) is
  bookkeeping and not counted.
- Ops that only move, compare or look up values (reshapes, slices, activations as in the course's
  convention, variable reads, tensor lists) cost nothing.  Any other op type is *unknown*: it is
  listed by type, never silently counted as zero.
- The graph's function calls (``PartitionedCall``, ``StatefulPartitionedCall``: Keras compiles a
  grouped convolution that way) are counted inside their bodies; a ``While`` loop's body is counted
  once per iteration when the trip count is static (a constant ``maximum_iterations``, or a counter
  compared with a constant), and once with a note otherwise; an ``If`` counts its larger branch.

Every count is tagged with *where* it was found (the top graph, a function body, a loop body),
which is what the profiler cross-check needs: TensorFlow's profiler sees only the top graph.
Run it on a layer with :func:`count_layer_graph`, on any function with :func:`count_function`.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

MATMULS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
CONVS = ("Conv2D", "Conv3D", "Conv1D", "DepthwiseConv2dNative")
TRANSPOSED = ("Conv2DBackpropInput", "Conv3DBackpropInputV2", "Conv3DBackpropInput")
MAC_OPS = (*MATMULS, "Einsum", *CONVS, *TRANSPOSED)
MULTIPLY = ("Mul", "RealDiv", "Div", "DivNoNan", "Square", "Reciprocal", "MulNoNan", "SquaredDifference")
ADD = ("AddV2", "Add", "Sub", "BiasAdd", "SquaredDifference")
REDUCE_ADD = ("Sum", "Mean")
CALLS = ("PartitionedCall", "StatefulPartitionedCall")
LOOPS = ("While", "StatelessWhile")
BRANCHES = ("If", "StatelessIf")
#: ops with no counted arithmetic: data movement, shapes, comparisons, lookups, variables, activations
FREE = frozenset("""
Const Identity IdentityN Placeholder NoOp ReadVariableOp VarHandleOp AssignVariableOp Reshape Transpose
ConcatV2 Concat Pack Unpack Split SplitV Slice StridedSlice ExpandDims Squeeze Shape ShapeN Size Rank Fill
ZerosLike OnesLike Range Tile BroadcastTo BroadcastArgs Cast Bitcast GatherV2 Gather GatherNd ResourceGather
Select SelectV2 Where Less LessEqual Greater GreaterEqual Equal NotEqual LogicalAnd LogicalOr LogicalNot
Max Min ArgMax ArgMin Relu Relu6 Elu Selu LeakyRelu Sigmoid Tanh Softmax LogSoftmax Softplus Softsign Exp Log
Log1p Erf Erfc Gelu Sqrt Rsqrt Abs Neg Sign Floor Ceil Round MaxPool MaxPool3D MaxPoolV2 Pad PadV2 MirrorPad
ResizeBilinear ResizeNearestNeighbor StopGradient PreventGradient CheckNumerics EnsureShape Snapshot
TensorListReserve TensorListFromTensor TensorListGetItem TensorListSetItem TensorListStack TensorListLength
TensorListElementShape TensorListPushBack TensorListPopBack Maximum Minimum ClipByValue OneHot
StatelessRandomUniformV2 StatelessRandomNormalV2 StatelessRandomGetKeyCounter RandomUniform RandomStandardNormal
DepthToSpace SpaceToDepth SpaceToBatchND BatchToSpaceND ReverseV2 Cumsum Prod All Any IsFinite
""".split())


@dataclass
class GraphCount:
    """MACs, multiplications and additions found in a graph, where each was found, and what was not counted."""

    macs: int = 0
    mults: int = 0
    adds: int = 0
    macs_by_op: Counter = field(default_factory=Counter)  # op type -> MACs (all places)
    macs_by_place: Counter = field(default_factory=Counter)  # (place, op type) -> MACs; place "top", "function",
    # "loop" (every iteration of a loop body)
    unknown_ops: Counter = field(default_factory=Counter)  # op type -> how many such ops (cost not known)
    notes: list[str] = field(default_factory=list)

    def add_macs(self, op_type: str, macs: int, outputs: int, place: str) -> None:
        """Record one MAC-bearing op: ``macs`` products summed into ``outputs`` sums."""
        self.macs += macs
        self.mults += macs
        self.adds += max(macs - outputs, 0)
        self.macs_by_op[op_type] += macs
        self.macs_by_place[(place, op_type)] += macs

    def scaled(self, factor: int) -> "GraphCount":
        """This count repeated ``factor`` times (a loop body)."""
        out = GraphCount(self.macs * factor, self.mults * factor, self.adds * factor,
                         Counter({k: v * factor for k, v in self.macs_by_op.items()}),
                         Counter({k: v * factor for k, v in self.macs_by_place.items()}),
                         Counter(self.unknown_ops), list(self.notes))
        return out

    def merge(self, other: "GraphCount", place: str | None = None) -> None:
        """Add ``other`` to this count; ``place`` re-tags where its MACs were found."""
        self.macs += other.macs
        self.mults += other.mults
        self.adds += other.adds
        self.macs_by_op.update(other.macs_by_op)
        for (where, op), v in other.macs_by_place.items():
            self.macs_by_place[(place or where, op)] += v
        self.unknown_ops.update(other.unknown_ops)
        self.notes += [n for n in other.notes if n not in self.notes]

    def macs_at(self, place: str) -> dict[str, int]:
        """MACs by op type found at ``place``."""
        return {op: v for (where, op), v in self.macs_by_place.items() if where == place}


def _dims(shape: Any) -> list[int] | None:
    """Static dimensions; a free first dimension is the batch of a function traced for any batch: 1."""
    try:
        dims = shape.as_list()
    except ValueError:
        return None
    if dims and dims[0] is None:
        dims = [1, *dims[1:]]
    return None if dims is None or any(d is None for d in dims) else [int(d) for d in dims]


def _elements(tensor: Any) -> int | None:
    dims = _dims(tensor.shape)
    return None if dims is None else math.prod(dims)


def einsum_macs(equation: str, shapes: Sequence[Sequence[int]]) -> tuple[int, int]:
    """(MACs, output elements) of a two-operand einsum: the product of every index's size."""
    inputs, output = equation.replace(" ", "").split("->")
    terms = inputs.split(",")
    if len(terms) != 2 or len(shapes) != 2:
        return 0, 0
    free = iter(c for c in string.ascii_letters if c not in equation)
    ellipsis_rank = max(len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes))
    names = "".join(next(free) for _ in range(max(ellipsis_rank, 0)))
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        if "..." in term:
            own = len(shape) - len(term.replace("...", ""))
            term = term.replace("...", names[len(names) - own:] if own else "")
        for letter, size in zip(term, shape):
            sizes[letter] = max(sizes.get(letter, 1), int(size))
    output = output.replace("...", names)
    return math.prod(sizes.values()), math.prod(sizes.get(c, 1) for c in output)


def _op_macs(op: Any) -> tuple[int, int] | None:
    """(MACs, outputs) of one MAC-bearing op, None when a shape is not static."""
    out = _elements(op.outputs[0])
    if out is None:
        return None
    t = op.type
    if t in MATMULS:
        a = _dims(op.inputs[0].shape)
        if a is None:
            return None
        flag = "transpose_a" if t == "MatMul" else "adj_x"
        k = a[-2] if op.get_attr(flag) else a[-1]
        return out * k, out
    if t == "Einsum":
        shapes = [_dims(x.shape) for x in op.inputs]
        if any(s is None for s in shapes):
            return None
        macs, _ = einsum_macs(op.get_attr("equation").decode(), shapes)
        return macs, out
    if t in CONVS:
        f = _dims(op.inputs[1].shape)
        if f is None:
            return None
        per_output = math.prod(f[:-2]) if t == "DepthwiseConv2dNative" else math.prod(f[:-1])
        return out * per_output, out
    if t in TRANSPOSED:  # every input element scattered into kernel x filters outputs
        f, grad = _dims(op.inputs[1].shape), _elements(op.inputs[2])
        if f is None or grad is None:
            return None
        return grad * math.prod(f[:-2]) * f[-2], out
    return None


def static_value(tensor: Any) -> Any:
    """The value of a small tensor computable without inputs (constants, shapes, their arithmetic), else None."""
    import numpy as np
    import tensorflow as tf

    value = tf.get_static_value(tensor)
    if value is not None:
        return value
    op = tensor.op
    reductions = {"Max": np.max, "Min": np.min, "Sum": np.sum, "Prod": np.prod}
    if op.type in ("Identity", "Cast", "Squeeze"):
        return static_value(op.inputs[0])
    if op.type in reductions:
        v = static_value(op.inputs[0])
        return None if v is None else reductions[op.type](v)
    binary = {"AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply, "Maximum": np.maximum,
              "Minimum": np.minimum, "FloorDiv": np.floor_divide}
    if op.type in binary:
        a, b = static_value(op.inputs[0]), static_value(op.inputs[1])
        return None if a is None or b is None else binary[op.type](a, b)
    return None


def _function_graphs(graph: Any) -> dict[str, Any]:
    """Every function the graph (or a graph it was defined in) knows, by name -> its FuncGraph."""
    out: dict[str, Any] = {}
    g = graph
    while g is not None:
        for name, fn in getattr(g, "_functions", {}).items():
            body = getattr(fn, "graph", None)
            if body is not None:
                out.setdefault(name, body)
        g = getattr(g, "outer_graph", None)
    return out


def _trip_count(op: Any, functions: dict[str, Any]) -> int | None:
    """A While op's iterations when static: a constant maximum_iterations or ``counter < constant``."""
    limits = []
    maximum = static_value(op.inputs[1]) if len(op.inputs) > 1 else None
    if maximum is not None and int(maximum) >= 0:
        limits.append(int(maximum))
    cond, body = functions.get(op.get_attr("cond").name), functions.get(op.get_attr("body").name)
    if cond is not None and body is not None:
        limit = _counted_loop(op, cond, body)
        if limit is not None:
            limits.append(limit)
    return min(limits) if limits else None


def _counted_loop(op: Any, cond: Any, body: Any) -> int | None:
    """Iterations of ``for (i = start; i < stop; i += step)`` found in the cond and body graphs."""
    inputs = [t.name for t in cond.inputs]  # by name: tensors compare elementwise with ==
    for c in cond.get_operations():
        if c.type not in ("Less", "LessEqual", "Greater", "GreaterEqual"):
            continue
        a, b = c.inputs
        for var, bound, flip in ((a, b, False), (b, a, True)):
            if var.op.type != "Placeholder" or var.name not in inputs:
                continue
            index = inputs.index(var.name)
            stop = static_value(bound)
            if stop is None and bound.op.type == "Placeholder" and bound.name in inputs:
                stop = static_value(op.inputs[inputs.index(bound.name)])
            start = static_value(op.inputs[index])
            step_op = body.outputs[index].op if index < len(body.outputs) else None
            while step_op is not None and step_op.type == "Identity":
                step_op = step_op.inputs[0].op
            if stop is None or start is None or step_op is None or step_op.type != "AddV2":
                continue
            step = next((static_value(x) for x in step_op.inputs if x.op.type != "Placeholder"), None)
            if not step:
                continue
            kind = c.type if not flip else {"Less": "Greater", "Greater": "Less", "LessEqual": "GreaterEqual",
                                            "GreaterEqual": "LessEqual"}[c.type]
            span = (stop - start) if kind.startswith("Less") else (start - stop)
            inclusive = kind.endswith("Equal")
            n = math.floor(span / abs(step)) + 1 if inclusive else math.ceil(span / abs(step))
            return max(int(n), 0)
    return None


def count_graph(graph: Any, functions: dict[str, Any] | None = None, place: str = "top",
                depth: int = 0, prune: bool = True) -> GraphCount:
    """Count every op of ``graph`` (a ``tf.Graph``/``FuncGraph``), entering calls, loops and branches.

    ``prune`` skips ops no output depends on (as grappler does); ``prune=False`` counts every op, as
    TensorFlow's profiler does.
    """
    functions = {**_function_graphs(graph), **(functions or {})}
    total = GraphCount()
    if depth > 20:
        total.notes.append("functions nested over 20 deep: not entered")
        return total
    live = _live_ops(graph) if prune else None
    for op in graph.get_operations():
        t = op.type
        if live is not None and op.name not in live:
            continue  # dead code (Keras traces one RNN step outside its loop for the shapes): grappler prunes it
        if t in MAC_OPS:
            found = _op_macs(op)
            if found is None:
                total.unknown_ops[f"{t} (shape not static)"] += 1
            else:
                total.add_macs(t, *found, place)
        elif (t in MULTIPLY or t in ADD or t == "AddN" or t in REDUCE_ADD) and not op.outputs[0].dtype.is_floating:
            continue  # integer index arithmetic (loop counters, shapes) is bookkeeping, not the model's work
        elif t in MULTIPLY or t in ADD:
            n = _elements(op.outputs[0]) or 0
            total.mults += n if t in MULTIPLY else 0
            total.adds += n if t in ADD else 0
        elif t == "AddN":
            total.adds += (len(op.inputs) - 1) * (_elements(op.outputs[0]) or 0)
        elif t in ("AvgPool", "AvgPool3D"):  # window - 1 additions and one division per output
            n, window = _elements(op.outputs[0]) or 0, math.prod(op.get_attr("ksize"))
            total.adds += n * (window - 1)
            total.mults += n
        elif t in REDUCE_ADD:
            n_in, n_out = _elements(op.inputs[0]), _elements(op.outputs[0])
            if n_in is not None and n_out is not None:
                total.adds += n_in - n_out
                total.mults += n_out if t == "Mean" else 0
        elif t in CALLS:
            body = functions.get(op.get_attr("f").name)
            if body is None:
                total.unknown_ops[f"{t} (body not found)"] += 1
            else:
                total.merge(count_graph(body, functions, "function" if place == "top" else place, depth + 1))
        elif t in LOOPS:
            body = functions.get(op.get_attr("body").name)
            if body is None:
                total.unknown_ops[f"{t} (body not found)"] += 1
                continue
            once = count_graph(body, functions, "loop" if place == "top" else place, depth + 1)
            trips = _trip_count(op, functions)
            if trips is None:
                total.notes.append(f"{op.name}: a loop whose trip count is not static, counted once")
                trips = 1
            total.merge(once)
            if trips > 1:
                total.merge(once.scaled(trips - 1), "loop" if place == "top" else place)
            elif trips == 0:
                total.merge(once.scaled(-1))
        elif t in BRANCHES:
            branches = [functions.get(op.get_attr(a).name) for a in ("then_branch", "else_branch")]
            counts = [count_graph(b, functions, "function" if place == "top" else place, depth + 1)
                      for b in branches if b is not None]
            if counts:
                total.merge(max(counts, key=lambda c: c.macs + c.mults + c.adds))
                total.notes.append(f"{op.name}: a branch, the larger side counted")
        elif t not in FREE:
            total.unknown_ops[t] += 1
    return total


def _live_ops(graph: Any) -> set[str] | None:
    """Names of the ops the graph's outputs depend on (None: a graph without declared outputs, all live)."""
    outputs = list(getattr(graph, "outputs", None) or [])
    if not outputs:
        return None
    live: set[str] = set()
    stack = [t.op for t in outputs] + list(getattr(graph, "control_outputs", []) or [])
    while stack:
        op = stack.pop()
        if op.name in live:
            continue
        live.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    for op in graph.get_operations():  # stateful ops run even when nothing reads them
        if op.type in ("AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"):
            live.add(op.name)
    return live


def count_function(fn: Callable[..., Any], specs: Sequence[Any]) -> tuple[GraphCount, Any]:
    """Trace ``fn`` at ``specs`` (``tf.TensorSpec``s, batch 1 for per-example counts); count; give the graph too."""
    import tensorflow as tf

    concrete = tf.function(fn, autograph=False).get_concrete_function(*specs)
    return count_graph(concrete.graph), concrete.graph


def count_layer_graph(operation: Any, args: tuple, kwargs: dict) -> GraphCount:
    """Count one call of a Keras layer or op from its own traced graph, at batch 1.

    ``args``/``kwargs`` are the call's arguments with ``keras.KerasTensor``s where tensors go.
    """
    import keras
    import tensorflow as tf
    from keras import tree

    flat = tree.flatten((args, kwargs))
    tensors = [t for t in flat if isinstance(t, keras.KerasTensor)]
    specs = [tf.TensorSpec((1, *t.shape[1:]), t.dtype) for t in tensors]

    def call(*xs: Any) -> Any:
        it = iter(xs)
        filled = tree.map_structure(lambda t: next(it) if isinstance(t, keras.KerasTensor) else t, (args, kwargs))
        if "training" in _call_arguments(operation) and "training" not in filled[1]:
            filled[1]["training"] = False
        return operation(*filled[0], **filled[1])

    count, _ = count_function(call, specs)
    return count


def _call_arguments(operation: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(operation.call).parameters)
    except (TypeError, ValueError, AttributeError):
        return set()
