"""Per-call counts of a built Keras model: parameters, neurons, multiplications, additions, MACs.

The counting of ``python -m tfbench.complexity`` and ``python -m tfbench.inspect`` (exercises 3.1,
3.2, 3.7; the conventions are stated in ``tfbench.complexity``'s docstring).  The model's call
graph is walked (:mod:`tfbench.models.call_graph`: one row per call, nested models at the caller's
shapes) and each call counted by the first of:

1. a rule for its layer type (:mod:`tfbench.models.layer_rules`, :mod:`tfbench.models.recurrent_rules`;
   users add their own with :func:`tfbench.models.layer_rules.register_counter`);
2. its own traced graph (:mod:`tfbench.models.graph_count`): the MAC-bearing ops by their shapes,
   inside function calls and loops, elementwise arithmetic per element.

Only what neither can count is *uncounted*: such a row is marked, its known part still counted, and
:meth:`Complexity.uncounted` names it grouped by layer type.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from tfbench.models.cross_check import profiler_flops  # noqa: F401 - the counting commands import it from here


@dataclass
class LayerCount:
    """The counts of one call of one layer (a layer called twice has two rows)."""

    name: str  # unique per call: nested models as a path (``base/conv1``), a second call as ``fc#2``
    kind: str
    output_shape: tuple[int, ...]
    params: int = 0  # the layer's own weights, on its first call only (a shared layer's weights count once)
    neurons: int = 0
    pool_neurons: int = 0
    mults: int = 0
    adds: int = 0
    macs: int = 0
    non_trainable_params: int = 0
    counted: bool = True  # False: something in this call could not be counted (``unknown``); the rest is counted
    method: str = "rule"  # "rule", "graph" (its traced ops), "registered" (a user's rule) or "none"
    unknown: str = ""  # what could not be counted, when ``counted`` is False
    layer: str = ""  # the layer's own name (the same on every call)


@dataclass
class Complexity:
    """Per-call counts of one model plus totals and, when asked, the profiler's cross-check."""

    model: str
    input_shape: tuple[int, ...]
    layers: list[LayerCount]
    published_params: int | None = None
    published_macs: float | None = None
    source: str = ""
    profiler: dict[str, Any] = field(default_factory=dict)

    def total(self, key: str) -> int:
        """Sum of one column over all rows."""
        return sum(getattr(layer, key) for layer in self.layers)

    def totals(self) -> dict[str, int]:
        """The totals row."""
        return {k: self.total(k) for k in ("params", "non_trainable_params", "neurons", "pool_neurons", "mults",
                                           "adds", "macs")}

    def uncounted(self) -> list[str]:
        """``Kind x N (what was not counted)`` per layer type with a call that could not be counted in full."""
        kinds: Counter = Counter(layer.kind for layer in self.layers if not layer.counted)
        why = {layer.kind: layer.unknown for layer in self.layers if not layer.counted}
        return [f"{kind} x {n} ({why[kind]})" for kind, n in kinds.items()]

    def to_json(self) -> dict[str, Any]:
        """Everything, as plain JSON types."""
        return {"model": self.model, "input_shape": list(self.input_shape),
                "layers": [asdict(layer) for layer in self.layers], "totals": self.totals(),
                "uncounted": self.uncounted(),
                "published": {"params": self.published_params, "macs": self.published_macs, "source": self.source},
                "profiler": self.profiler}


def _size(weights: list[Any]) -> int:
    return sum(int(math.prod(int(d) for d in w.shape)) for w in weights)


def count_call(operation: Any, args: tuple, kwargs: dict, outputs: list, name: str | None = None,
               first_call: bool = True) -> LayerCount:
    """Count one call of ``operation`` (a Keras layer, a ``keras.ops`` operation or an opaque model).

    ``args``/``kwargs`` hold ``keras.KerasTensor``s where the call had tensors and ``outputs`` are
    the output KerasTensors; every shape must be fixed (a :class:`UserError` says which is not).
    """
    import keras
    from keras import tree

    from tfbench.models import layer_rules
    from tfbench.models.graph_count import count_layer_graph

    tensors = [t for t in tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
    name = name or operation.name
    kind = type(operation).__name__
    if any(d is None for t in (*tensors, *outputs) for d in t.shape[1:]):
        from tfbench.plumbing.errors import UserError

        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise UserError(f"layer {name} ({kind}) has a free dimension in its shapes {shapes} -> "
                        f"{', '.join(str(tuple(t.shape)) for t in outputs)}; counting needs every shape fixed "
                        "(give the model a fixed input shape, --input-shape)")
    ins = [tuple(int(d) for d in t.shape[1:]) for t in tensors]
    outs = [tuple(int(d) for d in t.shape[1:]) for t in outputs] or [()]
    own_weights = getattr(operation, "trainable_weights", []) if first_call else []
    frozen = getattr(operation, "non_trainable_weights", []) if first_call else []
    c = LayerCount(name, kind, outs[0], params=_size(own_weights), non_trainable_params=_size(frozen),
                   layer=getattr(operation, "name", kind))
    rule = layer_rules.rule_for(operation)
    if rule is not None:
        call = layer_rules.Call(operation, ins, outs, layer_rules.bind(operation, args, kwargs))
        work = rule(call)
        c.method = "registered" if any(isinstance(operation, t) for t in layer_rules.USER_RULES) else "rule"
        c.macs, c.mults, c.adds, c.neurons, c.pool_neurons = (work.macs, work.mults, work.adds, work.neurons,
                                                              work.pool_neurons)
        return c
    c.method = "graph"
    try:
        graph = count_layer_graph(operation, args, kwargs)
    except Exception as err:  # noqa: BLE001 - a user's layer may fail to trace in any way
        from tfbench.plumbing.errors import first_line

        c.counted, c.method, c.unknown = False, "none", f"could not be traced: {first_line(err, 120)}"
        return c
    c.macs, c.mults, c.adds = graph.macs, graph.mults, graph.adds
    c.neurons = math.prod(outs[0]) if graph.macs else 0
    if graph.unknown_ops:
        c.counted = False
        c.unknown = "ops not counted: " + ", ".join(f"{op} x {n}" for op, n in sorted(graph.unknown_ops.items()))
    elif graph.notes:
        c.unknown = "; ".join(graph.notes)
    return c


def count_layer(layer: Any) -> LayerCount:
    """Count the first call of a built layer of a functional model (its ``input``/``output`` tensors)."""
    node = layer._inbound_nodes[0]
    return count_call(layer, tuple(node.arguments.args), dict(node.arguments.kwargs), list(node.outputs))


def flat_layers(model: Any) -> list:
    """The layers of ``model`` with nested models opened up (input layers skipped)."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
            out += flat_layers(layer)
        elif type(layer).__name__ != "InputLayer":
            out.append(layer)
    return out


def model_input(model: Any, input_shape: Any = None) -> tuple[tuple[int | None, ...], str]:
    """The input shape (no batch dimension) and dtype to walk ``model`` at: ``input_shape``, or the model's."""
    from tfbench.models.call_graph import graph_of

    graph = graph_of(model)
    inputs = list(graph.inputs) if graph is not None else None
    dtype = str(getattr(inputs[0], "dtype", "float32")) if inputs else "float32"
    if input_shape is not None:
        return tuple(int(d) for d in input_shape), dtype
    if not inputs:
        from tfbench.plumbing.errors import UserError

        raise UserError(f"model {model.name} ({type(model).__name__}) is a subclassed keras.Model without a "
                        "fixed input: pass its input shape (--input-shape, or input_shape=)")
    return tuple(inputs[0].shape[1:]), dtype


def count_model(model: Any, name: str | None = None, input_shape: Any = None) -> Complexity:
    """Per-call counts of a built Keras model walked at ``input_shape`` (default: the model's own)."""
    from tfbench.models import zoo
    from tfbench.models.call_graph import graph_of, walk

    shape, dtype = model_input(model, input_shape)
    if any(d is None for d in shape):
        from tfbench.plumbing.errors import UserError

        raise UserError(f"model {model.name}: the input shape {shape} has a free dimension; counting needs every "
                        "shape fixed (give the model a fixed input shape, --input-shape)")
    if graph_of(model) is None:
        rows = [_count_subclassed(model, shape, dtype)]
    else:
        rows = [count_call(r.operation, r.args, r.kwargs, r.outputs, r.name, r.call_index == 1)
                for r in walk(model, shape, dtype)]
    entry = zoo.MODELS.get(name or "")
    published = entry is not None and tuple(shape[0:2]) == (entry.input_size, entry.input_size)
    return Complexity(model=name or model.name, input_shape=tuple(int(d) for d in shape), layers=rows,
                      published_params=entry.params if published else None,
                      published_macs=entry.macs if published else None,
                      source=entry.source if entry else "")


def _count_subclassed(model: Any, shape: tuple[int, ...], dtype: str) -> LayerCount:
    """A subclassed model has no graph of layers: one row, counted from its traced ``call``."""
    import keras

    from tfbench.plumbing.errors import UserError, first_line

    x = keras.KerasTensor((None, *shape), dtype=dtype)
    try:
        if not model.built:
            model.build((None, *shape))
        out = model.compute_output_spec(x)
    except Exception as err:  # noqa: BLE001 - a user's call may fail in any way
        raise UserError(f"model {model.name} ({type(model).__name__}) is a subclassed keras.Model and cannot be "
                        f"called at input shape {shape}: {first_line(err, 200)}") from err
    from keras import tree

    row = count_call(model, (x,), {}, tree.flatten(out))
    row.unknown = (row.unknown + "; " if row.unknown else "") + "a subclassed model: counted as one call"
    return row
