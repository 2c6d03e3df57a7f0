"""What a model asks of a processor, layer by layer: the shapes the compiler tiles, read from a built Keras model.

Each layer becomes one or two :class:`Work` items, with its MACs and other operations taken from
:mod:`tfbench.models.counting` (the counts of ``python -m tfbench.complexity``), so what the compiler lowers is
what tfbench counts:

- ``conv``: a (grouped) convolution as ``groups`` x an output of ``ho x wo x cout`` from an input of
  ``hin x win x cin`` through a ``kh x kw`` kernel at stride ``sh``.  Conv2D, DepthwiseConv2D (one group per
  channel), Conv1D, and Dense (a 1x1 convolution over its rows) are this exactly; SeparableConv2D is two
  (depthwise, then pointwise); any other layer with MACs (attention, EinsumDense, transposed or 3-D
  convolutions) is lowered as the matrix product that has its MAC count;
- ``stream``: pooling, BatchNormalization, Add, Multiply, Rescaling, normalisations: inputs streamed through,
  the counted additions and multiplications (and the comparisons of max pooling) on the vector unit;
- ``free``: ReLU, Flatten, padding, concatenation, dropout: no arithmetic (an activation belongs to the layer
  before it, as the course counts it; a reshape or a concatenation is a matter of addresses);
- ``unknown``: a layer type tfbench has no counting rule for: named in the report, not simulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Work:
    """One piece of a layer's work, in the shapes the compiler needs (batch 1, elements, not bytes)."""

    name: str
    kind: str  # the Keras class name
    lowering: str  # "conv", "stream", "free" or "unknown"
    macs: int = 0
    # conv geometry (per group)
    groups: int = 1
    hin: int = 1
    win: int = 1
    cin: int = 1
    ho: int = 1
    wo: int = 1
    cout: int = 1
    kh: int = 1
    kw: int = 1
    sh: int = 1
    # stream
    in_elements: int = 0
    out_elements: int = 0
    ops: dict[str, int] = field(default_factory=dict)

    @property
    def weight_elements(self) -> int:
        return self.groups * self.kh * self.kw * self.cin * self.cout if self.lowering == "conv" else 0

    @property
    def flops(self) -> int:
        """Two per MAC plus the other operations."""
        return 2 * self.macs + sum(self.ops.values())


def _dims(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape[1:])


def _spatial(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(h, w, channels) of a batch-free shape of rank 1 to 3 (a vector is 1 x 1 x n, a sequence 1 x t x n)."""
    if len(shape) == 3:
        return shape
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) == 1:
        return 1, 1, shape[0]
    return 1, math.prod(shape[:-1]), shape[-1]


def _gemm(name: str, kind: str, macs: int, out_shape: tuple[int, ...]) -> Work:
    """A layer with MACs but no convolution shape: the matrix product M x K by K x N with M*K*N = MACs."""
    n = out_shape[-1] if out_shape else 1
    m = math.prod(out_shape[:-1]) if len(out_shape) > 1 else 1
    if m * n and macs % (m * n) == 0:
        k = macs // (m * n)
    else:
        m, k, n = 1, macs, 1
    return Work(name, kind, "conv", macs, 1, 1, m, k, 1, m, n)


def layer_work(layer: Any, count: Any) -> list[Work]:
    """The work items of one built Keras layer, given its :class:`tfbench.models.counting.LayerCount`."""
    from keras import layers as L

    inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    output = layer.output[0] if isinstance(layer.output, (list, tuple)) else layer.output
    in_shape, out_shape = _dims(inputs[0]), _dims(output)
    name, kind = layer.name, type(layer).__name__
    if not count.counted:
        return [Work(name, kind, "unknown")]
    if count.macs == 0 and count.mults == 0 and count.adds == 0 and count.pool_neurons == 0:
        return [Work(name, kind, "free")]
    if isinstance(layer, (L.Conv2D, L.Conv1D, L.DepthwiseConv2D, L.Dense)) and not isinstance(
            layer, (L.Conv2DTranspose, L.Conv1DTranspose, L.SeparableConv2D, L.SeparableConv1D)) \
            and len(in_shape) <= 3:
        hin, win, cin = _spatial(in_shape)
        ho, wo, cout = _spatial(out_shape)
        if isinstance(layer, L.Dense):
            kh = kw = sh = 1
        else:
            ks = tuple(layer.kernel_size)
            kh, kw = (1, ks[0]) if len(ks) == 1 else ks
            sh = 1 if len(ks) == 1 else int(layer.strides[0])
        groups = cin if isinstance(layer, L.DepthwiseConv2D) else int(getattr(layer, "groups", 1))
        work = Work(name, kind, "conv", count.macs, groups, hin, win, cin // groups, ho, wo, cout // groups, kh, kw,
                    sh)
        if work.groups * work.ho * work.wo * work.cout * work.kh * work.kw * work.cin == count.macs:
            return [work]
        return [_gemm(name, kind, count.macs, out_shape)]
    if isinstance(layer, L.SeparableConv2D) and len(in_shape) == 3:
        hin, win, cin = in_shape
        ho, wo, cout = out_shape
        kh, kw = layer.kernel_size
        mult = layer.depth_multiplier
        depthwise = Work(f"{name}/depthwise", kind, "conv", ho * wo * cin * mult * kh * kw, cin, hin, win, 1, ho, wo,
                         mult, kh, kw, int(layer.strides[0]))
        pointwise = Work(f"{name}/pointwise", kind, "conv", ho * wo * cin * mult * cout, 1, ho, wo, cin * mult, ho,
                         wo, cout)
        if depthwise.macs + pointwise.macs == count.macs:
            return [depthwise, pointwise]
    if count.macs:
        return [_gemm(name, kind, count.macs, out_shape)]
    elements = sum(math.prod(_dims(t)) for t in inputs)
    out = math.prod(out_shape)
    ops = {"ADD_32": count.adds, "MUL_32": count.mults}
    if isinstance(layer, (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
                          L.GlobalMaxPooling3D)):
        ops["ADD_32"] += max(0, elements - out)  # comparisons: each window's maximum, on the adder
    return [Work(name, kind, "stream", 0, in_elements=elements, out_elements=out,
                 ops={k: v for k, v in ops.items() if v})]


def model_work(model: Any, name: str | None = None) -> tuple[list[Work], Any]:
    """Every layer's work items, in the model's order, and tfbench's counts of the model."""
    from tfbench.models import counting

    counts = counting.count_model(model, name)
    layers = counting.flat_layers(model)
    work: list[Work] = []
    for layer, count in zip(layers, counts.layers):
        work += layer_work(layer, count)
    return work, counts
