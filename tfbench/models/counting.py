"""Per-layer counts of a built Keras model: parameters, neurons, multiplications, additions, MACs.

The counting rules of ``python -m tfbench.complexity`` (exercises 3.1, 3.2; the conventions are
stated in that command's docstring), as library code so other commands (``tfbench.roofline``)
count layers the same way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence


@dataclass
class LayerCount:
    """The counts for one Keras layer."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int = 0
    neurons: int = 0
    pool_neurons: int = 0
    mults: int = 0
    adds: int = 0
    macs: int = 0
    non_trainable_params: int = 0
    counted: bool = True  # False: a layer type with no counting rule (its cost is not in the totals)


@dataclass
class Complexity:
    """Per-layer counts of one model plus totals and, when asked, the profiler's cross-check."""

    model: str
    input_shape: tuple[int, ...]
    layers: list[LayerCount]
    published_params: int | None = None
    published_macs: float | None = None
    source: str = ""
    profiler: dict[str, Any] = field(default_factory=dict)

    def total(self, key: str) -> int:
        """Sum of one column over all layers."""
        return sum(getattr(layer, key) for layer in self.layers)

    def totals(self) -> dict[str, int]:
        """The totals row."""
        return {k: self.total(k) for k in ("params", "non_trainable_params", "neurons", "pool_neurons", "mults",
                                           "adds", "macs")}

    def uncounted(self) -> list[str]:
        """``name (Kind)`` of every layer whose arithmetic has no counting rule."""
        return [f"{layer.name} ({layer.kind})" for layer in self.layers if not layer.counted]

    def to_json(self) -> dict[str, Any]:
        """Everything, as plain JSON types."""
        return {"model": self.model, "input_shape": list(self.input_shape),
                "layers": [asdict(layer) for layer in self.layers], "totals": self.totals(),
                "published": {"params": self.published_params, "macs": self.published_macs, "source": self.source},
                "profiler": self.profiler}


def profiler_flops(call: Any, input_shape: Sequence[int], dtype: str = "float32") -> dict[str, Any]:
    """TensorFlow's profiler count of the traced inference graph of ``call`` at batch 1: total and per op type.

    The profiler counts 2 FLOPs per multiply-add for the ops it knows (``Conv2D``, ``MatMul``,
    ``DepthwiseConv2dNative``, ...); ops without a registered count (``Einsum``, XLA calls) count 0.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((1, *input_shape), dtype)
    concrete = tf.function(call, autograph=False).get_concrete_function(spec)
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    graph = concrete.graph
    if any(op.type in ("PartitionedCall", "StatefulPartitionedCall") for op in graph.get_operations()):
        # a SavedModel signature or a tf.Module calls its function: the profiler sees only the call, so
        # inline it (freezing inlines function calls; the weights become constants of this copy only)
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        graph = convert_variables_to_constants_v2(concrete).graph
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")  # the v1 profiler's own deprecation notices
    try:
        info = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(),
                                             cmd="op", options=options)
    finally:
        tf.get_logger().setLevel(level)
    by_op: dict[str, int] = {}
    stack = list(info.children)  # the "op" view nests each op type under the previous one
    while stack:
        node = stack.pop()
        if node.float_ops:
            by_op[node.name] = by_op.get(node.name, 0) + int(node.float_ops)
        stack.extend(node.children)
    ops = {op.type for op in graph.get_operations()}
    return {"total_flops": int(info.total_float_ops), "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "conv_matmul_flops": sum(v for k, v in by_op.items() if k.startswith(("Conv2D", "MatMul"))),
            "graph_ops": sorted(ops)}


def _shape(tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape[1:])


def _elements(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _adaptive_windows(n_in: int, n_out: int) -> list[int]:
    """Window lengths of adaptive pooling along one axis (PyTorch's floor/ceil rule)."""
    return [math.ceil((i + 1) * n_in / n_out) - (i * n_in) // n_out for i in range(n_out)]


#: layers that move or pick values without arithmetic (the course's convention: activations belong to the
#: neuron before them, max pooling compares).  Anything that is neither here nor counted below is named as uncounted.
NO_ARITHMETIC = frozenset({
    "InputLayer", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Activation", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout", "Flatten", "Reshape",
    "Permute", "RepeatVector", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
    "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Concatenate", "Identity", "ActivityRegularization",
    "Masking", "ChannelSlice", "Embedding",
})
NORMALISATIONS = ("LayerNormalization", "GroupNormalization", "UnitNormalization", "RMSNormalization")


def _conv_macs(layer, in_shape, out_shape) -> tuple[int, int]:
    """(neurons, MACs) of a Conv1D/2D/3D (grouped), DepthwiseConv1D/2D, SeparableConv1D/2D or ConvNDTranspose."""
    from keras import layers as L

    kernel = _elements(layer.kernel_size)
    out = _elements(out_shape)
    cin = in_shape[-1]
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return out, out * kernel
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        spatial = _elements(out_shape[:-1])
        depthwise = spatial * cin * layer.depth_multiplier * kernel
        return out, depthwise + out * cin * layer.depth_multiplier
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        # every input element is scattered into kernel x filters outputs: one MAC each
        return out, _elements(in_shape[:-1]) * cin * kernel * layer.filters
    return out, out * kernel * cin // getattr(layer, "groups", 1)


def _attention(layer, out_shape) -> tuple[int, int]:
    """(MACs, extra adds) of MultiHeadAttention: Q, K, V projections, scores, weighted sum, output projection."""
    node = layer._inbound_nodes[0]
    tensors = list(node.input_tensors)
    query = _shape(tensors[0])
    value = _shape(tensors[1]) if len(tensors) > 1 else query
    key = _shape(tensors[2]) if len(tensors) > 2 else value
    heads, dk = layer._num_heads, layer._key_dim
    dv = layer._value_dim or dk
    tq, tk = _elements(query[:-1]), _elements(key[:-1])
    macs = (tq * query[-1] * heads * dk + tk * key[-1] * heads * dk + tk * value[-1] * heads * dv
            + heads * tq * tk * dk + heads * tq * tk * dv + tq * heads * dv * out_shape[-1])
    return macs, heads * tq * tk  # the softmax's sums (its exponentials and divisions are not counted)


def _einsum_contracted(layer) -> int:
    """How many products each output of an EinsumDense sums: the kernel dimensions absent from the output."""
    inputs, output = layer.equation.split("->")
    kernel = inputs.split(",")[1]
    shape = [int(d) for d in layer.kernel.shape]
    return _elements([d for letter, d in zip(kernel, shape) if letter not in output])


def count_layer(layer) -> LayerCount:
    """Count one built Keras layer from its class, configuration and input/output shapes.

    A layer type with no rule here and not in :data:`NO_ARITHMETIC` comes back with
    ``counted=False``, so a report can name it instead of counting it as zero.
    """
    from keras import layers as L

    inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    output = layer.output[0] if isinstance(layer.output, (list, tuple)) else layer.output
    if any(d is None for t in (inputs[0], output) for d in t.shape[1:]):
        from tfbench.plumbing.errors import UserError

        raise UserError(f"layer {layer.name} ({type(layer).__name__}) has a free dimension in its shapes "
                        f"{tuple(inputs[0].shape)} -> {tuple(output.shape)}; counting needs every shape fixed "
                        "(give the model a fixed input shape, --input-shape)")
    in_shape = _shape(inputs[0])
    out_shape = _shape(output)
    out = _elements(out_shape)
    params = sum(_elements(w.shape) for w in layer.trainable_weights)
    frozen = sum(_elements(w.shape) for w in layer.non_trainable_weights)
    kind = type(layer).__name__
    c = LayerCount(layer.name, kind, out_shape, params=params, non_trainable_params=frozen)
    bias = getattr(layer, "use_bias", False)
    if isinstance(layer, L.MultiHeadAttention):
        c.neurons = out
        c.macs, extra = _attention(layer, out_shape)
        c.mults = c.macs
        c.adds = c.macs + extra  # accumulation (one addition per product, biases included)
    elif isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D, L.SeparableConv1D,
                            L.SeparableConv2D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        c.neurons, c.macs = _conv_macs(layer, in_shape, out_shape)
        c.mults = c.macs
        if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
            c.adds = c.macs + (out if bias else 0)  # scattered products summed into the outputs
        else:
            c.adds = c.macs - out + (out if bias else 0)
    elif isinstance(layer, (L.Dense, L.EinsumDense)):
        k = in_shape[-1] if isinstance(layer, L.Dense) else _einsum_contracted(layer)
        c.neurons, c.mults, c.macs = out, out * k, out * k
        c.adds = out * (k - 1) + (out if getattr(layer, "bias", None) is not None else 0)
    elif isinstance(layer, L.BatchNormalization):
        c.mults = c.adds = out  # folded: y = x * scale + shift
    elif kind in NORMALISATIONS:
        # mean, variance, normalise, scale and shift: 3 multiplications and 5 additions per element
        c.mults, c.adds = 3 * out, 5 * out
    elif isinstance(layer, (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D,
                            L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.AdaptiveMaxPooling2D)):
        c.pool_neurons = out  # comparisons only
    elif isinstance(layer, (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D)):
        window = _elements(layer.pool_size)
        c.pool_neurons, c.mults, c.adds = out, out, out * (window - 1)
    elif isinstance(layer, (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)):
        window = _elements(in_shape[:-1])
        c.pool_neurons, c.mults, c.adds = out, out, out * (window - 1)
    elif isinstance(layer, L.AdaptiveAveragePooling2D):
        rows, cols = _adaptive_windows(in_shape[0], out_shape[0]), _adaptive_windows(in_shape[1], out_shape[1])
        channels = out_shape[-1]
        c.pool_neurons = out
        c.adds = channels * sum(r * q - 1 for r in rows for q in cols)
        c.mults = channels * sum(1 for r in rows for q in cols if r * q > 1)
    elif isinstance(layer, (L.Add, L.Subtract, L.Average)):
        c.adds = out * (len(inputs) - 1)
        c.mults = out if isinstance(layer, L.Average) else 0
    elif isinstance(layer, L.Multiply):
        c.mults = out * (len(inputs) - 1)
    elif isinstance(layer, L.Rescaling):
        c.mults = c.adds = out
    elif kind not in NO_ARITHMETIC:
        c.counted = False
    return c


def flat_layers(model) -> list:
    """The layers of ``model`` with nested models opened up (input layers skipped)."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
            out += flat_layers(layer)
        elif type(layer).__name__ != "InputLayer":
            out.append(layer)
    return out


def count_model(model, name: str | None = None) -> Complexity:
    """Per-layer counts of a built Keras functional model (input layers skipped)."""
    from tfbench.models import zoo

    rows = [count_layer(layer) for layer in flat_layers(model)]
    entry = zoo.MODELS.get(name or "")
    published = entry is not None and tuple(model.input_shape[1:3]) == (entry.input_size, entry.input_size)
    return Complexity(model=name or model.name, input_shape=tuple(int(d) for d in model.input_shape[1:]),
                      layers=rows,
                      published_params=entry.params if published else None,
                      published_macs=entry.macs if published else None,
                      source=entry.source if entry else "")


#: layer kinds whose multiply-accumulates TensorFlow's profiler counts (2 FLOPs each), and the ops it counts them in.
PROFILED_KINDS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Dense")
PROFILED_OPS = ("Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MatMul")


def profiler_cross_check(counts: Complexity, profiler: dict[str, Any]) -> dict[str, Any]:
    """Our MACs of the layer kinds the profiler counts beside half its FLOPs of their ops (batch 1).

    Dense layers count only on a flat input (a ``MatMul``; on a sequence Keras uses ``BatchMatMulV2``,
    which the profiler does not count the same way).
    """
    ours = sum(layer.macs for layer in counts.layers if layer.kind in PROFILED_KINDS
               and (layer.kind != "Dense" or len(layer.output_shape) == 1))
    theirs = sum(v for k, v in profiler.get("by_op", {}).items() if k in PROFILED_OPS) / 2
    return {"our_macs": ours, "profiler_macs": theirs, "kinds": list(PROFILED_KINDS), "ops": list(PROFILED_OPS),
            "relative_difference": abs(ours - theirs) / theirs if theirs else None}
