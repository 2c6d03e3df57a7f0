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
        return {k: self.total(k) for k in ("params", "neurons", "pool_neurons", "mults", "adds", "macs")}

    def to_json(self) -> dict[str, Any]:
        """Everything, as plain JSON types."""
        return {"model": self.model, "input_shape": list(self.input_shape),
                "layers": [asdict(layer) for layer in self.layers], "totals": self.totals(),
                "published": {"params": self.published_params, "macs": self.published_macs, "source": self.source},
                "profiler": self.profiler}


def _shape(tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in tensor.shape[1:])


def _elements(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _adaptive_windows(n_in: int, n_out: int) -> list[int]:
    """Window lengths of adaptive pooling along one axis (PyTorch's floor/ceil rule)."""
    return [math.ceil((i + 1) * n_in / n_out) - (i * n_in) // n_out for i in range(n_out)]


def count_layer(layer) -> LayerCount:
    """Count one built Keras layer from its class, configuration and input/output shapes."""
    from keras import layers as L

    inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    in_shape = _shape(inputs[0])
    out_shape = _shape(layer.output)
    out = _elements(out_shape)
    params = sum(_elements(w.shape) for w in layer.trainable_weights)
    c = LayerCount(layer.name, type(layer).__name__, out_shape, params=params)
    if isinstance(layer, L.Conv2D) and not isinstance(layer, (L.DepthwiseConv2D, L.Conv2DTranspose)):
        kh, kw = layer.kernel_size
        k = kh * kw * in_shape[-1] // layer.groups
        c.neurons, c.mults, c.macs = out, out * k, out * k
        c.adds = out * (k - 1) + (out if layer.use_bias else 0)
    elif isinstance(layer, L.Dense):
        k = in_shape[-1]
        c.neurons, c.mults, c.macs = out, out * k, out * k
        c.adds = out * (k - 1) + (out if layer.use_bias else 0)
    elif isinstance(layer, L.BatchNormalization):
        c.mults = c.adds = out  # folded: y = x * scale + shift
    elif isinstance(layer, (L.MaxPooling2D, L.GlobalMaxPooling2D, L.AdaptiveMaxPooling2D)):
        c.pool_neurons = out  # comparisons only
    elif isinstance(layer, L.AveragePooling2D):
        window = layer.pool_size[0] * layer.pool_size[1]
        c.pool_neurons, c.mults, c.adds = out, out, out * (window - 1)
    elif isinstance(layer, L.GlobalAveragePooling2D):
        window = in_shape[0] * in_shape[1]
        c.pool_neurons, c.mults, c.adds = out, out, out * (window - 1)
    elif isinstance(layer, L.AdaptiveAveragePooling2D):
        rows, cols = _adaptive_windows(in_shape[0], out_shape[0]), _adaptive_windows(in_shape[1], out_shape[1])
        channels = out_shape[-1]
        c.pool_neurons = out
        c.adds = channels * sum(r * q - 1 for r in rows for q in cols)
        c.mults = channels * sum(1 for r in rows for q in cols if r * q > 1)
    elif isinstance(layer, L.Add):
        c.adds = out * (len(inputs) - 1)
    elif params:
        raise NotImplementedError(f"layer {layer.name} ({type(layer).__name__}) has parameters "
                                  "but no counting rule")
    return c


def count_model(model, name: str | None = None) -> Complexity:
    """Per-layer counts of a built Keras functional model (input layers skipped)."""
    from tfbench.models import zoo

    rows = [count_layer(layer) for layer in model.layers if type(layer).__name__ != "InputLayer"]
    entry = zoo.MODELS.get(name or "")
    published = entry is not None and tuple(model.input_shape[1:3]) == (entry.input_size, entry.input_size)
    return Complexity(model=name or model.name, input_shape=tuple(int(d) for d in model.input_shape[1:]),
                      layers=rows,
                      published_params=entry.params if published else None,
                      published_macs=entry.macs if published else None,
                      source=entry.source if entry else "")
