"""Neurons, parameters, multiplications and additions per layer (exercises 3.1, 3.2), for a registry model
or a user's model file, with TensorFlow's profiler as a cross-check; ``python -m tfbench.complexity``
prints :func:`format_table`.  The counting rules are :mod:`tfbench.models.counting`.
"""

from __future__ import annotations

from typing import Any

from tfbench.models.counting import Complexity, LayerCount, count_layer, count_model
from tfbench.plumbing.errors import UserError
from tfbench.reporting.tables import si

__all__ = ["Complexity", "LayerCount", "analyse", "count_layer", "count_model", "format_table", "profiler_flops"]


def profiler_flops(model) -> dict[str, Any]:
    """TensorFlow's profiler count of the traced inference graph: total and per op type (2 FLOPs per MAC)."""
    from tfbench.models.counting import profiler_flops as count

    return count(lambda x: model(x, training=False), tuple(model.input_shape[1:]))


def analyse(name: str, input_size: int | None = None, *, profile: bool = True) -> Complexity:
    """Build zoo model ``name``, count it, and (if ``profile``) add the TF profiler's cross-check."""
    from tfbench import models

    model = models.get(name, input_size=input_size)
    result = count_model(model, name)
    if profile:
        result.profiler = profiler_flops(model)
    return result


def analyse_file(ref: str, *, input_shape: str | None = None, allow_code: bool = False,
                 profile: bool = True) -> Complexity:
    """Count a model file, SavedModel or factory (:func:`tfbench.models.load.load`); it must be a Keras model."""
    from tfbench.models import load
    from tfbench.models.counting import profiler_flops as count_flops

    shape = load.parse_input_shape(input_shape) if input_shape else None
    loaded = load.load(ref, input_shape=shape, allow_code=allow_code)
    if loaded.keras_model is None:
        raise UserError(f"{ref}: complexity counts Keras layers and this {loaded.source} has none; "
                        f"python -m tfbench.inspect {ref} gives the profiler's count")
    result = count_model(loaded.keras_model, loaded.keras_model.name)
    result.model = loaded.name
    if profile:
        result.profiler = count_flops(loaded.call, loaded.input_shape, loaded.input_dtype)
    return result


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
    out.append(f"multiply-accumulates (conv+fc): {t['macs']:,} = {si(t['macs'])}" + (
        f"   (published about {si(result.published_macs)})" if result.published_macs else ""))
    out.append(f"all multiplications: {t['mults']:,}   all additions: {t['adds']:,}")
    if result.source:
        out.append(f"published numbers: {result.source}")
    if result.profiler:
        p = result.profiler
        from tfbench.models.cross_check import cross_check

        check = cross_check(t["macs"], p)
        if check["graph_macs"] is not None:
            same = "equal to" if check["rules_vs_graph"] == 0 else "DIFFERS FROM"
            out.append(f"the traced graph op by op (function bodies, every loop iteration): "
                       f"{check['graph_macs']:,} MACs ({same} our MACs)")
        out.append(f"TF profiler, traced graph: {p['total_flops']:,} FLOPs in all; on the ops it counts the graph has "
                   f"{check['graph_on_compared']:,} MACs, the profiler {check['profiler_on_compared']:,.0f}; our "
                   f"mults+adds: {t['mults'] + t['adds']:,}")
        out += [f"  the profiler's blind spot: {b}" for b in check["blind_spots"]]
        out.append("  by op: " + ", ".join(f"{k} {v:,}" for k, v in p["by_op"].items()))
    return "\n".join(out)
