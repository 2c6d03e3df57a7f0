"""Counting a network: neurons, trainable parameters, multiplications and additions (exercises 3.1, 3.2).

``python -m tfbench.complexity MODEL [--image-size 224] [--json]`` builds MODEL (``tfbench.models.zoo``:
alexnet, alexnet_grouped, vgg19, resnet18, resnet50, resnet152, inception_v1, lenet5, mlp)
with Keras and prints a per-layer table like torchinfo's, computed from the built layers'
shapes, never from a hand-typed table.  Then it traces the model's ``tf.function`` and asks
TensorFlow's own profiler (``tf.compat.v1.profiler``) for the float-operation count of that
graph, as an independent check.  The graph is not frozen: the profiler needs only static
shapes, which the variables' reads have, and freezing VGG19 copied its 575 MB of weights
into the graph several times (8.3 GB peak instead of 3.1 GB, the same counts).

Conventions (the course's, stated so the numbers can be argued with):

- **neurons** are the output elements of convolution and fully connected layers: each
  computes one weighted sum (plus bias) and its activation.  The input is not counted, and
  neither are activation layers (they belong to the neuron before them).  Pooling outputs
  are counted separately (``pool neurons``): they compute a max or a mean, not a weighted sum.
- **trainable parameters**: kernel and bias elements, BatchNorm's gamma and beta; BatchNorm's
  moving mean and variance are state, not trainable (as in torchvision's counts).
- **multiplications and additions** are counted separately.  An output of a conv or fc
  layer with ``K`` inputs (``K = kh*kw*cin/groups`` or ``in_features``) takes ``K``
  multiplications and ``K-1`` additions to accumulate them, plus 1 addition for the bias if
  the layer has one: with a bias, additions = multiplications.  ``MACs`` (multiply-accumulates,
  what papers call "FLOPs" or "multiply-adds") counts the conv and fc multiplications only;
  that is what the published numbers are.  Inference BatchNorm is folded to one multiply and
  one add per element; average pooling adds ``window-1`` and multiplies once per output;
  a residual ``Add`` adds once per element; ReLU, max pooling (comparisons), padding, concat,
  flatten, dropout and softmax cost no multiplications or additions here.
- **TensorFlow's profiler** counts 2 FLOPs per multiply-add for ``Conv2D`` and ``MatMul``
  (so it should report exactly ``2 x MACs`` for them, which the tests check), one per element
  for ``BiasAdd``/``AddV2``/``Mul``, ``window`` per output for pooling, and nothing for ReLU.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from tfbench import cli
from tfbench.errors import UserError, run_cli


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


def profiler_flops(model) -> dict[str, Any]:
    """TensorFlow's profiler count of the traced inference graph: total and per op type (2 FLOPs per MAC)."""
    import tensorflow as tf

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)

    def infer(x):
        return model(x, training=False)

    concrete = tf.function(infer, autograph=False).get_concrete_function(spec)
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    info = tf.compat.v1.profiler.profile(graph=concrete.graph, run_meta=tf.compat.v1.RunMetadata(),
                                         cmd="op", options=options)
    by_op: dict[str, int] = {}
    stack = list(info.children)  # the "op" view nests each op type under the previous one
    while stack:
        node = stack.pop()
        if node.float_ops:
            by_op[node.name] = by_op.get(node.name, 0) + int(node.float_ops)
        stack.extend(node.children)
    return {"total_flops": int(info.total_float_ops), "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "conv_matmul_flops": sum(v for k, v in by_op.items() if k.startswith(("Conv2D", "MatMul")))}


def analyse(name: str, input_size: int | None = None, *, profile: bool = True) -> Complexity:
    """Build zoo model ``name``, count it, and (if ``profile``) add the TF profiler's cross-check."""
    from tfbench.models import zoo

    model = zoo.build(name, input_size)
    result = count_model(model, name)
    if profile:
        result.profiler = profiler_flops(model)
    return result


def _si(n: float) -> str:
    """1.23 G / 416.5 k style, for totals that span LeNet to VGG."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n:g}"


def _fmt(n: float) -> str:
    return f"{n:,}" if isinstance(n, int) else f"{n:,.3g}"


def format_table(result: Complexity) -> str:
    """The per-layer table, totals, and the comparison with published and profiler counts."""
    columns = ("layer", "type", "output shape", "params", "neurons", "pool neurons", "mults", "adds")
    rows = [[r.name, r.kind, "x".join(map(str, r.output_shape)), _fmt(r.params), _fmt(r.neurons),
             _fmt(r.pool_neurons), _fmt(r.mults), _fmt(r.adds)] for r in result.layers]
    t = result.totals()
    rows.append(["total", "", "", _fmt(t["params"]), _fmt(t["neurons"]), _fmt(t["pool_neurons"]),
                 _fmt(t["mults"]), _fmt(t["adds"])])
    widths = [max(len(columns[i]), *(len(r[i]) for r in rows)) for i in range(len(columns))]
    right = {3, 4, 5, 6, 7}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [f"{result.model}, input {'x'.join(map(str, result.input_shape))}", line(columns),
           "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[:-1]] + ["  ".join("-" * w for w in widths), line(rows[-1]), ""]
    out.append(f"trainable parameters: {t['params']:,}" + (
        f"   (published {result.published_params:,})" if result.published_params else ""))
    out.append(f"neurons (conv+fc outputs): {t['neurons']:,}   pooling outputs: {t['pool_neurons']:,}")
    out.append(f"multiply-accumulates (conv+fc): {t['macs']:,} = {_si(t['macs'])}" + (
        f"   (published about {_si(result.published_macs)})" if result.published_macs else ""))
    out.append(f"all multiplications: {t['mults']:,}   all additions: {t['adds']:,}")
    if result.source:
        out.append(f"published numbers: {result.source}")
    if result.profiler:
        p = result.profiler
        out.append(f"TF profiler, traced graph: {p['total_flops']:,} FLOPs in all; Conv2D+MatMul "
                   f"{p['conv_matmul_flops']:,} = 2 x {p['conv_matmul_flops'] / 2:,.0f} "
                   f"({'matches' if p['conv_matmul_flops'] == 2 * t['macs'] else 'DIFFERS FROM'} our MACs);"
                   f" our mults+adds: {t['mults'] + t['adds']:,}")
        out.append("  by op: " + ", ".join(f"{k} {v:,}" for k, v in p["by_op"].items()))
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: count one model and print the table (or JSON)."""
    from tfbench.models import registry

    parser = cli.parser("complexity", __doc__.split("\n")[0])
    parser.add_argument("model", choices=registry.NAMES, help="which model")
    parser.add_argument("--image-size", type=cli.positive_int, default=None,
                        help="square input size (default: the model's own, 224 for the ImageNet models)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--no-profile", action="store_true", help="skip the TensorFlow profiler cross-check")
    parser.add_argument("--logdir", default=None,
                        help="also write the table as a TensorBoard Text card under LOGDIR/complexity/<timestamp>/")
    cli.add_verbose(parser)
    ns = parser.parse_args(argv)
    if ns.image_size is not None:  # the model's own rule, from the registry (VGG19: a multiple of 32, ...)
        problem = registry.input_size_error(ns.model, ns.image_size)
        if problem:
            raise UserError(problem)
    if ns.logdir:
        cli.check_output_dir(ns.logdir)
    cli.quiet_tensorflow(ns.verbose)
    result = analyse(ns.model, ns.image_size, profile=not ns.no_profile)
    table = format_table(result)
    print(json.dumps(result.to_json(), indent=2) if ns.json else table)
    if ns.logdir:
        from tfbench import paths
        from tfbench.summaries import write_text

        run = paths.run_dir(ns.logdir, "complexity") / ns.model
        card = f"`python -m tfbench.complexity {ns.model}`\n\n```\n{table}\n```"
        write_text(run, {f"complexity/{ns.model}": card})
        print(f"TensorBoard Text card: {run}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
