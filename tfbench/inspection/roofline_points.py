"""The points of ``python -m tfbench.roofline`` (exercises 6.10, 5.11): fusion blocks with and without
fusion, and every layer of VGG19 or a user's model, each timed alone and placed by arithmetic
intensity under this CPU's measured peaks (:mod:`tfbench.inspection.roofline`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from tfbench.inspection.roofline import BYTES_F32, PeakProbe, Point, _reduce_first

MODELS = ("vgg19", "resnet50", "lenet5")


def fusion_points(*, batch: int, warmup: int, repeats: int, small: bool = False,
                  probe: PeakProbe | None = None) -> list[Point]:
    """The fusion experiments' blocks before and after fusion, all timed round robin (``small``: tiny shapes)."""
    import tensorflow as tf

    from tfbench import timing
    from tfbench.models import blocks
    from tfbench.rewriting.grappler import grappler_options

    conv = blocks.ConvShape(batch, 14 if small else 56, 16 if small else 128, 16 if small else 128)
    dense = blocks.DenseShape(batch, 512, 256) if small else blocks.DenseShape(batch, 25088, 4096)  # VGG19's fc6
    chain_dims = (batch, 14, 14, 16) if small else (batch, 56, 56, 128)
    conv_net, dense_net, chain = blocks.ConvBiasRelu(conv), blocks.DenseBiasRelu(dense), blocks.ElementwiseChain()
    xc, xd = conv.input(), dense.input()
    xe = tf.random.stateless_normal(chain_dims, seed=[1, 2])

    def under(options: dict[str, Any], fn: Callable[[Any], Any], x: Any) -> Callable[[], Any]:
        def call() -> Any:
            with grappler_options(**options):
                return fn(x)
        return call

    first = _reduce_first
    cases = {
        "conv+bias+relu unfused": under({"remapping": False}, tf.function(lambda x: first(conv_net(x))), xc),
        "conv+bias+relu fused": under({}, tf.function(lambda x: first(conv_net(x))), xc),
        "dense+bias+relu unfused": under({"remapping": False}, tf.function(lambda x: first(dense_net(x))), xd),
        "dense+bias+relu fused": under({}, tf.function(lambda x: first(dense_net(x))), xd),
        "10 elementwise ops": under({}, tf.function(lambda x: first(chain(x))), xe),
        "10 elementwise ops XLA": under({}, tf.function(lambda x: first(chain(x)), jit_compile=True), xe),
    }
    cases.update(probe.cases() if probe else {})
    timings = {t.case: t for t in timing.compare(cases, warmup=warmup, repeats=repeats)}
    if probe:
        probe.take(timings, "fusion")
    conv_in = batch * conv.size * conv.size * conv.cin
    conv_out = batch * conv.size * conv.size * conv.cout
    conv_k = conv.kernel ** 2 * conv.cin * conv.cout + conv.cout
    dense_in, dense_out = batch * dense.units_in, batch * dense.units_out
    dense_k = dense.units_in * dense.units_out + dense.units_out
    n = math.prod(map(int, chain_dims))
    specs = {  # name: (FLOPs, bytes); unfused: each of bias add and relu reads and writes the whole output again
        "conv+bias+relu unfused": (conv.flops + conv_out, BYTES_F32 * (conv_in + conv_k + 5 * conv_out)),
        "conv+bias+relu fused": (conv.flops + conv_out, BYTES_F32 * (conv_in + conv_k + conv_out)),
        "dense+bias+relu unfused": (2 * dense_in * dense.units_out + dense_out,
                                    BYTES_F32 * (dense_in + dense_k + 5 * dense_out)),
        "dense+bias+relu fused": (2 * dense_in * dense.units_out + dense_out,
                                  BYTES_F32 * (dense_in + dense_k + dense_out)),
        # ten ops of one FLOP per element; one by one each reads and writes n floats (y * x reads two)
        "10 elementwise ops": (10 * n, BYTES_F32 * 21 * n),
        "10 elementwise ops XLA": (10 * n, BYTES_F32 * 2 * n),
    }
    return [Point("fusion", name, "fused" if ("fused" in name and "unfused" not in name) or "XLA" in name
                  else "unfused", flops, moved, timings[name].median_ms, timings[name].p10_ms, timings[name].p90_ms)
            for name, (flops, moved) in specs.items()]


def model_points(size: int, batch: int, *, warmup: int, repeats: int, probe: PeakProbe,
                 seed: int = 0) -> tuple[list[Point], dict[str, float]]:
    """VGG19's forward pass (Keras float32, Module float32, Module bfloat16) as roofline points, and the matmul
    peaks measured in the same rounds (so the fraction of the peak is not a change of load)."""
    import tensorflow as tf

    from tfbench import models
    from tfbench.models import counting, vgg19

    weights = vgg19.random_weights(seed, input_size=size)
    keras_model = models.get("vgg19", input_size=size, weights=weights)
    module32 = models.get("vgg19", impl="module", input_size=size, weights=weights)
    module16 = models.get("vgg19", impl="module", input_size=size, weights=weights, compute_dtype="bfloat16")
    x = tf.random.stateless_uniform((batch, size, size, 3), seed=[seed, 9], minval=-1.0, maxval=1.0)
    fns = {"VGG19 Keras float32": tf.function(lambda t: _reduce_first(keras_model(t, training=False))),
           "VGG19 Module float32": tf.function(lambda t: _reduce_first(module32(t))),
           "VGG19 Module bfloat16": tf.function(lambda t: _reduce_first(module16(t)))}
    from tfbench import timing

    cases = {k: (lambda f=f: f(x)) for k, f in fns.items()}
    cases.update(probe.cases())
    timings = {t.case: t for t in timing.compare(cases, warmup=warmup, repeats=repeats)}
    peaks = probe.take(timings, "forward")
    counts = counting.count_model(keras_model, "vgg19")
    flops = batch * (counts.total("mults") + counts.total("adds"))
    params = sum(int(w.shape.num_elements()) for w in module32.trainable_variables)
    acts = batch * sum(math.prod(map(int, layer.output_shape)) for layer in counts.layers)
    moved = BYTES_F32 * (batch * size * size * 3 + acts + params)
    return [Point("model", name, "bfloat16" if "bfloat16" in name else "float32", flops,
                  moved // (2 if "bfloat16" in name else 1), t.median_ms, t.p10_ms, t.p90_ms)
            for name, t in timings.items()], peaks


def markdown(rows: Sequence[dict[str, Any]], peaks: dict[str, Any]) -> str:
    """The table as markdown (TensorBoard's Text dashboard and docs)."""
    from tfbench.reporting.summaries import markdown_table

    head = ("group", "layer", "kind", "MFLOP", "MB", "FLOP/B", "ms", "GFLOP/s", "of roof", "bound")
    body = [(r["group"], r["name"], r["kind"], f"{r['flops'] / 1e6:.1f}", f"{r['bytes'] / 1e6:.2f}",
             f"{r['intensity']:.2f}", f"{r['median_ms']:.3f}", f"{r['gflops']:.1f}", f"{r['of_bound']:.0%}",
             "memory" if r["memory_bound"] else "compute") for r in rows]
    ridge = peaks["float32_gflops"] / peaks["bandwidth_gb_per_s"]
    return (f"Peaks: float32 matmul {peaks['float32_gflops']:.0f} GFLOP/s, bfloat16 matmul "
            f"{peaks['bfloat16_gflops']:.0f} GFLOP/s, add bandwidth {peaks['bandwidth_gb_per_s']:.1f} GB/s; "
            f"ridge {ridge:.1f} FLOP/byte.\n\n" + markdown_table(head, body))


def summary_lines(rows: Sequence[dict[str, Any]], peaks: dict[str, Any]) -> list[str]:
    """What the roofline says: the ridge, which layers are memory-bound, the VGG19 forward vs the peak."""
    ridge = peaks["float32_gflops"] / peaks["bandwidth_gb_per_s"]
    lines = [f"ridge point: {ridge:.1f} FLOP/byte (float32 matmul peak / add bandwidth)"]
    for group in dict.fromkeys(r["group"] for r in rows if r["group"] not in ("fusion", "model")):
        mine = [r for r in rows if r["group"] == group and r["flops"] > 0]
        if not mine:
            continue
        below = [r for r in mine if r["memory_bound"]]
        share = sum(r["median_ms"] for r in below) / max(1e-9, sum(r["median_ms"] for r in mine))
        kinds = sorted({r["kind"] for r in below})
        lines.append(f"{group}: {len(below)} of {len(mine)} counted layers below the ridge ({share:.0%} of their "
                     f"time): {', '.join(kinds) or 'none'}; fusion pays there")
    same = peaks.get("same_rounds_as_forward", {})
    for r in rows:
        if r["group"] == "model":
            peak = same.get(f"{r['kind']}_gflops") or peaks[f"{r['kind']}_gflops"]
            goal = ""
            if r["kind"] == "float32":
                goal = f" (goal 70%: {'met' if r['gflops'] >= 0.7 * peak else 'not met'})"
            lines.append(f"{r['name']} forward: {r['gflops']:.0f} GFLOP/s = {r['gflops'] / peak:.0%} of the "
                         f"{r['kind']} matmul peak measured in the same rounds ({peak:.0f} GFLOP/s){goal}")
    fusion = {r["name"]: r for r in rows if r["group"] == "fusion"}
    for before, after in (("conv+bias+relu unfused", "conv+bias+relu fused"),
                          ("dense+bias+relu unfused", "dense+bias+relu fused"),
                          ("10 elementwise ops", "10 elementwise ops XLA")):
        if before in fusion and after in fusion:
            lines.append(f"{after}: {fusion[before]['median_ms'] / fusion[after]['median_ms']:.2f}x faster than "
                         f"unfused; intensity {fusion[before]['intensity']:.2f} -> {fusion[after]['intensity']:.2f}")
    return lines
