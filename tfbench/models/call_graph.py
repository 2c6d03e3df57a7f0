"""A Keras model's call graph: one record per call of a layer, nested models opened at the caller's shapes.

Counting a model (exercises 3.1, 3.2, 3.7) must follow what runs, not the list of layers: a
``Dense`` shared by two branches runs twice, and a ``keras.applications`` base model built with a
free input size (``include_top=False``) runs at whatever size the outer model gives it.  This
module walks a functional model's nodes in the order Keras runs them (as
``Functional._run_through_graph`` does), with symbolic tensors (``keras.KerasTensor``) in place
of data, and returns one :class:`CallRecord` per call:

- a nested functional or ``Sequential`` model is walked again with the shapes of the call that
  reaches it (its own records named ``outer/inner/layer``);
- a layer called a second time gets a second record (``fc``, then ``fc#2``), as torchinfo marks
  a module it meets again;
- a ``keras.ops`` function used in a functional model (``keras.ops.einsum(...)``) is an operation
  node like a layer, and gets a record too;
- a subclassed ``keras.Model`` has no graph to walk: it is one record, its ``call`` counted from its
  traced graph by :mod:`tfbench.models.graph_count`.

Nothing here runs arithmetic: output shapes come from the nodes themselves where the shapes are
those Keras built them with, else from ``compute_output_spec`` (a symbolic trace).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class CallRecord:
    """One call of one operation (a layer, a ``keras.ops`` function or an opaque model) in the model."""

    name: str  # unique per call: the path through nested models, "#2" for a second call
    operation: Any  # the keras Layer / Operation / Model
    args: tuple  # positional arguments, KerasTensors where tensors were
    kwargs: dict  # keyword arguments (attention_mask=..., training flags, ...)
    outputs: list = field(default_factory=list)  # the flat output KerasTensors
    call_index: int = 1  # 1 for the first call of this operation, 2 for the second, ...

    @property
    def kind(self) -> str:
        """The class name of the operation (``Dense``, ``LSTM``, ``Einsum``)."""
        return type(self.operation).__name__

    @property
    def inputs(self) -> list:
        """The flat tensor arguments (positional first, then keyword), as KerasTensors."""
        return [t for t in _flatten((self.args, self.kwargs)) if _is_tensor(t)]

    def in_shapes(self) -> list[tuple[int | None, ...]]:
        """Every tensor argument's shape without the batch dimension."""
        return [tuple(t.shape[1:]) for t in self.inputs]

    def out_shapes(self) -> list[tuple[int | None, ...]]:
        """Every output's shape without the batch dimension."""
        return [tuple(t.shape[1:]) for t in self.outputs]


def _flatten(structure: Any) -> list:
    from keras import tree

    return tree.flatten(structure)


def _is_tensor(x: Any) -> bool:
    import keras

    return isinstance(x, keras.KerasTensor)


def graph_of(model: Any) -> Any | None:
    """The functional graph of ``model`` (itself, or a ``Sequential``'s), None for a subclassed model."""
    if hasattr(model, "_nodes_by_depth") and getattr(model, "_nodes_by_depth", None) is not None:
        return model
    inner = getattr(model, "_functional", None)
    if inner is not None and hasattr(inner, "_nodes_by_depth"):
        return inner
    return None


def is_model(op: Any) -> bool:
    """Whether ``op`` is a ``keras.Model`` (functional, Sequential or subclassed)."""
    import keras

    return isinstance(op, keras.Model)


def walk(model: Any, input_shape: Sequence[int], dtype: str = "float32") -> list[CallRecord]:
    """Every call in ``model`` run on one input of ``input_shape`` (no batch dimension), in running order."""
    import keras

    x = keras.KerasTensor((None, *[int(d) for d in input_shape]), dtype=dtype)
    records: list[CallRecord] = []
    graph = graph_of(model)
    if graph is None:  # a subclassed model: one opaque call
        out = model.compute_output_spec(x) if hasattr(model, "compute_output_spec") else None
        records.append(CallRecord(model.name, model, (x,), {}, _flatten(out) if out is not None else []))
        return records
    _walk_graph(graph, [x], "", records, {})
    return records


def _same_shapes(given: Sequence[Any], built: Sequence[Any]) -> bool:
    return len(given) == len(built) and all(tuple(a.shape[1:]) == tuple(b.shape[1:]) and a.dtype == b.dtype
                                            for a, b in zip(given, built))


def _walk_graph(graph: Any, inputs: Sequence[Any], prefix: str, records: list[CallRecord],
                seen: dict[int, int]) -> list:
    """Walk one functional graph on ``inputs``; append records; return its outputs at these shapes."""
    from keras import tree

    tensors = {id(ref): given for ref, given in zip(graph.inputs, inputs)}
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            if any(id(t) not in tensors for t in node.input_tensors):
                continue  # not reachable from these inputs (as Keras skips it)
            args, kwargs = node.arguments.fill_in(tensors)
            op = node.operation
            seen[id(op)] = seen.get(id(op), 0) + 1
            label = prefix + op.name + (f"#{seen[id(op)]}" if seen[id(op)] > 1 else "")
            given = [t for t in tree.flatten((args, kwargs)) if _is_tensor(t)]
            inner = graph_of(op) if is_model(op) else None
            if inner is not None:
                outputs = _walk_graph(inner, given, label + "/", records, seen)
            else:
                if _same_shapes(given, node.input_tensors):
                    outputs = list(node.outputs)
                else:
                    outputs = _flatten(op.compute_output_spec(*args, **kwargs))
                records.append(CallRecord(label, op, tuple(args), dict(kwargs), list(outputs), seen[id(op)]))
            for ref, out in zip(node.outputs, outputs):
                tensors[id(ref)] = out
    return [tensors[id(t)] for t in graph.outputs]
