"""The counting rules, one per Keras layer type: what one call of the layer computes, from its shapes.

A rule takes a :class:`Call` (the layer, its input and output shapes without the batch dimension,
its arguments by name) and returns the :class:`Work` of one example: multiply-accumulates,
multiplications, additions, neurons, pooling outputs.  The conventions are the course's
(exercises 3.1, 3.2, stated in ``python -m tfbench.complexity``): a sum of ``K`` products takes
``K`` multiplications and ``K - 1`` additions, plus one for a bias (:func:`weighted_sums`, used by
every rule so convolutions plain, separable and transposed, dense layers and attention all add the
same way); activations and softmax belong to the sum before them and cost nothing.

The recurrent rules (exercise 3.7: the LSTM's gates) are in :mod:`tfbench.models.recurrent_rules`.
A layer type with no rule here is counted from its own traced graph
(:mod:`tfbench.models.graph_count`).  A user registers a rule for their own layer type with
:func:`register_counter`::

    from tfbench.models.layer_rules import Work, register_counter, weighted_sums
    register_counter(MyLayer, lambda call: weighted_sums(call.outputs * 16, call.outputs))
"""

from __future__ import annotations

import math
from typing import Any, Callable

from tfbench.models.work import Call, Work, bind, elementwise, weighted_sums

__all__ = ["Call", "Work", "bind", "elementwise", "register_counter", "rule_for", "weighted_sums"]


Rule = Callable[[Call], Work]
#: what users registered: a layer class -> its rule (looked up before the built-in rules, subclasses included)
USER_RULES: dict[type, Rule] = {}


def register_counter(layer_type: type, rule: Rule) -> None:
    """Count every call of ``layer_type`` (and its subclasses) with ``rule(call) -> Work``."""
    if not isinstance(layer_type, type) or not callable(rule):
        raise TypeError(f"register_counter takes a layer class and a function, got {layer_type!r}, {rule!r}")
    USER_RULES[layer_type] = rule


#: layers that move or pick values without arithmetic (activations belong to the neuron before them, max
#: pooling compares, a lookup reads a row)
NO_ARITHMETIC = frozenset({
    "InputLayer", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Activation", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise", "AlphaDropout", "Flatten", "Reshape",
    "Permute", "RepeatVector", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
    "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D", "Concatenate", "Identity", "ActivityRegularization",
    "Masking", "ChannelSlice", "Maximum", "Minimum", "Resizing", "CenterCrop",
})
NORMALISATIONS = ("LayerNormalization", "GroupNormalization", "UnitNormalization", "RMSNormalization")


def _kernel(layer: Any) -> int:
    return math.prod(layer.kernel_size)


def conv(call: Call) -> Work:
    """Conv1D/2D/3D (grouped), DepthwiseConv1D/2D, SeparableConv1D/2D, Conv1D/2D/3DTranspose."""
    from keras import layers as L

    layer, cin, out = call.layer, call.inp[-1], call.outputs
    bias = bool(getattr(layer, "use_bias", False))
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return weighted_sums(out * _kernel(layer), out, bias)
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        middle = math.prod(call.out[:-1]) * cin * layer.depth_multiplier  # the depthwise stage's outputs
        depthwise = weighted_sums(middle * _kernel(layer), middle)
        pointwise = weighted_sums(out * cin * layer.depth_multiplier, out, bias)
        return Work(depthwise.macs + pointwise.macs, depthwise.mults + pointwise.mults,
                    depthwise.adds + pointwise.adds, neurons=out)
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        # every input element is scattered into kernel x filters outputs: one MAC each
        return weighted_sums(math.prod(call.inp[:-1]) * cin * _kernel(layer) * layer.filters, out, bias)
    return weighted_sums(out * _kernel(layer) * cin // getattr(layer, "groups", 1), out, bias)


def dense(call: Call) -> Work:
    """Dense on any input rank (a MatMul per position) and EinsumDense (the contracted kernel dimensions)."""
    from keras import layers as L

    layer = call.layer
    if isinstance(layer, L.Dense):
        return weighted_sums(call.outputs * call.inp[-1], call.outputs, layer.use_bias)
    inputs, output = layer.equation.split("->")
    kernel = inputs.split(",")[1]
    contracted = math.prod(int(d) for letter, d in zip(kernel, layer.kernel.shape) if letter not in output)
    return weighted_sums(call.outputs * contracted, call.outputs, getattr(layer, "bias", None) is not None)


def multi_head_attention(call: Call) -> Work:
    """MultiHeadAttention: Q, K, V projections, scaled scores, the weighted sum, the output projection.

    The arguments are read by name, so ``attention_mask=`` is never taken for the key.
    """
    layer = call.layer
    query = call.shape_of("query")
    value = call.shape_of("value") or query
    key = call.shape_of("key") or value
    heads, dk = layer._num_heads, layer._key_dim
    dv = layer._value_dim or dk
    bias = bool(layer._use_bias)
    tq, tk = math.prod(query[:-1]), math.prod(key[:-1])
    work = (weighted_sums(tq * query[-1] * heads * dk, tq * heads * dk, bias)
            + weighted_sums(tk * key[-1] * heads * dk, tk * heads * dk, bias)
            + weighted_sums(tk * value[-1] * heads * dv, tk * heads * dv, bias)
            + elementwise(mults=tq * heads * dk)  # the query scaled by 1/sqrt(key_dim)
            + weighted_sums(heads * tq * tk * dk, heads * tq * tk)
            + weighted_sums(heads * tq * tk * dv, heads * tq * dv)
            + weighted_sums(tq * heads * dv * call.out[-1], call.outputs, bias))
    work.neurons = call.outputs
    return work


def _attention_shapes(call: Call) -> tuple[int, int, int]:
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in call.arguments["inputs"]]
    query, value = shapes[0], shapes[1]
    return math.prod(query[:-1]), math.prod(value[:-1]), query[-1]


def dot_attention(call: Call) -> Work:
    """Attention (Luong): scores q.k (scaled when ``use_scale``), then the weights times the values."""
    tq, tv, d = _attention_shapes(call)
    layer = call.layer
    if layer.score_mode == "concat":  # scores = w * sum(tanh(scale * (q + k)))
        scores = elementwise(mults=tq * tv * (d if layer.use_scale else 0) + tq * tv, adds=tq * tv * d
                             + tq * tv * (d - 1))
    else:
        scores = weighted_sums(tq * tv * d, tq * tv) + elementwise(mults=tq * tv if layer.use_scale else 0)
    return scores + weighted_sums(tq * tv * d, tq * d)


def additive_attention(call: Call) -> Work:
    """AdditiveAttention (Bahdanau): scores sum(scale * tanh(q + k)), then the weights times the values."""
    tq, tv, d = _attention_shapes(call)
    scores = elementwise(mults=tq * tv * d if call.layer.use_scale else 0, adds=tq * tv * d + tq * tv * (d - 1))
    return scores + weighted_sums(tq * tv * d, tq * d)


def normalisation(call: Call) -> Work:
    """BatchNormalization folded (one multiply, one add per element); Normalization (x - mean) / std;
    layer, group, unit and RMS normalisation: mean, variance, normalise, scale, shift (3 mults, 5 adds)."""
    from keras import layers as L

    n = call.outputs
    if isinstance(call.layer, (L.BatchNormalization, L.Normalization, L.Rescaling)):
        return elementwise(n, n)
    return elementwise(3 * n, 5 * n)


def pooling(call: Call) -> Work:
    """Max pooling compares; average pooling adds ``window - 1`` and multiplies once per output."""
    from keras import layers as L

    layer, out = call.layer, call.outputs
    if isinstance(layer, (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D,
                          L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.AdaptiveMaxPooling2D)):
        return Work(pool_neurons=out)
    if isinstance(layer, L.AdaptiveAveragePooling2D):
        rows = _adaptive_windows(call.inp[0], call.out[0])
        cols = _adaptive_windows(call.inp[1], call.out[1])
        channels = call.out[-1]
        return Work(pool_neurons=out, adds=channels * sum(r * q - 1 for r in rows for q in cols),
                    mults=channels * sum(1 for r in rows for q in cols if r * q > 1))
    if isinstance(layer, (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D)):
        window = math.prod(call.inp[:-1])
    else:
        window = math.prod(layer.pool_size)
    return Work(pool_neurons=out, mults=out, adds=out * (window - 1))


def _adaptive_windows(n_in: int, n_out: int) -> list[int]:
    """Window lengths of adaptive pooling along one axis (PyTorch's floor/ceil rule)."""
    return [math.ceil((i + 1) * n_in / n_out) - (i * n_in) // n_out for i in range(n_out)]


def merge(call: Call) -> Work:
    """Add/Subtract/Average (one addition per element per extra input; Average one division), Multiply."""
    from keras import layers as L

    out, extra = call.outputs, len(call.ins) - 1
    if isinstance(call.layer, L.Multiply):
        return elementwise(mults=out * extra)
    return elementwise(adds=out * extra, mults=out if isinstance(call.layer, L.Average) else 0)


def einsum_op(call: Call) -> Work:
    """``keras.ops.einsum`` in a functional model: every index's size multiplied (two operands)."""
    from tfbench.models.graph_count import einsum_macs

    macs, outputs = einsum_macs(call.layer.subscripts, call.ins)
    if not macs:
        return Work()
    return weighted_sums(macs, outputs)


def matmul_op(call: Call) -> Work:
    """``keras.ops.matmul``: each output sums the contracted dimension."""
    return weighted_sums(call.outputs * call.ins[0][-1], call.outputs)


def bidirectional(call: Call) -> Work:
    """Both directions on the same input, then the merge."""
    layer = call.layer
    total = Work()
    outs = []
    for inner in (layer.forward_layer, layer.backward_layer):
        units = inner.cell.units if hasattr(inner.cell, "units") else inner.cell.filters
        per_step = call.inp[:-1] if inner.return_sequences else ()
        if hasattr(inner.cell, "filters"):
            per_step = (call.out[:-1])
        out = (*per_step, units)
        outs.append(out)
        rule = rule_for(inner)
        if rule is None:
            raise ValueError(f"no rule for {type(inner).__name__} inside {layer.name}")
        total = total + rule(Call(inner, call.ins, [out], {}))
    n = math.prod(outs[0])
    mode = layer.merge_mode
    if mode == "sum":
        total = total + elementwise(adds=n)
    elif mode == "mul":
        total = total + elementwise(mults=n)
    elif mode == "ave":
        total = total + elementwise(adds=n, mults=n)
    return total


def time_distributed(call: Call) -> Work:
    """The inner layer at one step's shapes, once per step."""
    inner = call.layer.layer
    steps = call.inp[0]
    rule = rule_for(inner)
    step_call = Call(inner, [s[1:] for s in call.ins], [s[1:] for s in call.outs], {})
    if rule is None:
        import keras

        from tfbench.models.graph_count import count_layer_graph

        x = keras.KerasTensor((None, *step_call.inp), dtype=inner.compute_dtype or "float32")
        g = count_layer_graph(inner, (x,), {})
        if g.unknown_ops:
            raise ValueError(f"{inner.name} inside {call.layer.name}: ops not counted: {dict(g.unknown_ops)}")
        return Work(g.macs, g.mults, g.adds).times(steps)
    return rule(step_call).times(steps)


def free(call: Call) -> Work:
    """Moves, picks or looks up values: no arithmetic (Embedding: one row read per token)."""
    return Work()


def builtin_rules() -> list[tuple[tuple[type, ...], Rule]]:
    """(layer classes, rule) in the order they are tried."""
    from keras import layers as L
    from keras.src.ops import numpy as knp

    from tfbench.models import recurrent_rules as R

    return [
        ((L.MultiHeadAttention,), multi_head_attention),
        ((L.AdditiveAttention,), additive_attention),
        ((L.Attention,), dot_attention),
        ((L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D, L.SeparableConv1D,
          L.SeparableConv2D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose), conv),
        ((L.Dense, L.EinsumDense), dense),
        ((L.BatchNormalization, L.Normalization, L.Rescaling, L.LayerNormalization, L.GroupNormalization,
          L.UnitNormalization, L.RMSNormalization), normalisation),
        ((L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
          L.GlobalMaxPooling3D, L.AdaptiveMaxPooling2D, L.AveragePooling1D, L.AveragePooling2D,
          L.AveragePooling3D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
          L.AdaptiveAveragePooling2D), pooling),
        ((L.Add, L.Subtract, L.Average, L.Multiply), merge),
        ((L.Embedding,), free),
        ((L.Bidirectional,), bidirectional),
        ((L.TimeDistributed,), time_distributed),
        ((L.ConvLSTM1D, L.ConvLSTM2D, L.ConvLSTM3D), R.conv_lstm),
        ((L.SimpleRNN, L.LSTM, L.GRU), R.recurrent),
        ((knp.Einsum,), einsum_op),
        ((knp.Matmul,), matmul_op),
    ]


_BUILTIN: list[tuple[tuple[type, ...], Rule]] = []


def rule_for(operation: Any) -> Rule | None:
    """The rule counting ``operation``: a user's, a built-in one, :func:`free`, or None (count its graph)."""
    for cls, rule in USER_RULES.items():
        if isinstance(operation, cls):
            return rule
    if type(operation).__name__ in NO_ARITHMETIC:
        return free
    if not _BUILTIN:
        _BUILTIN.extend(builtin_rules())
    for classes, rule in _BUILTIN:
        if isinstance(operation, classes):
            return rule
    return None
