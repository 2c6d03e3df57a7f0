"""Operator fusion, measured: where fused kernels are faster and where they are not (ex. 5.11).

A fused kernel does several ops in one pass over memory: ``relu(conv(x) + b)`` writes the
conv output once instead of writing it, reading it back for the bias, writing it, reading it
for the relu.  That saves memory traffic and kernel launches, nothing else: the multiply-adds
are the same.  So fusion pays where the unfused graph is bound by memory or by per-op
overhead, and changes nothing where the arithmetic dominates.  Four experiments, each
checking that fused and unfused outputs agree (max abs difference) and timing both
(median after warm-up, the variants timed in alternating rounds so they share the machine's load):

1. ``Conv2D + BiasAdd + Relu`` with grappler's remapper on (``_FusedConv2D``) vs off, from a
   compute-bound layer (56x56x256, 3x3) to memory-bound ones (1x1, few channels, big batch);
2. conv + BatchNorm + relu at inference: Keras 3's BN (elementwise ops, not folded by grappler)
   vs ``FusedBatchNormV3`` (the remapper folds it into ``_FusedConv2D``) vs BN folded into the
   conv weights by hand (:func:`tfbench.models.blocks.fold_batch_norm`);
3. XLA (``jit_compile=True``) vs default on those blocks, on a chain of 10 elementwise ops, and
   on VGG19 and LeNet-5 forward and training step; the HLO of one small case before and after
   XLA's fusion pass is written out;
4. ``MatMul + BiasAdd + Relu`` (``_FusedMatMul``) for fc-layer shapes.

Run ``python -m tfbench.fusion`` (all four, plus the HLO files under ``logs/fusion/<ts>/``) or
``python -m tfbench.bench fusion`` (timings only); ``--quick`` uses tiny shapes.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tfbench import timing
from tfbench.models.registry import SIZE_RULES, input_size_error
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli
from tfbench.timing import onednn_enabled

if TYPE_CHECKING:  # for annotations; TensorFlow loads inside the functions that use it, after parsing
    pass
from tfbench.rewriting.fusion import (
    BN_SHAPES,
    CHAIN_SHAPES,
    CONV_SHAPES,
    DENSE_SHAPES,
    QUICK_CHAIN,
    QUICK_CONV,
    QUICK_DENSE,
    TOLERANCE,
    _quiet_retracing,
    exp1_conv_bias_relu,
    exp2_conv_bn_relu,
    exp3_xla,
    exp4_dense_bias_relu,
    summary_table,
    write_hlo,
    write_tensorboard,
)


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The options shared by ``python -m tfbench.fusion`` and ``python -m tfbench.bench fusion``."""
    p = cli.parser(prog, __doc__.split("\n\n")[0])
    p.add_argument("--experiments", default="1,2,3,4", help="which experiments, comma-separated")
    p.add_argument("--quick", action="store_true", help="tiny shapes, no VGG19/LeNet-5 (seconds; for tests)")
    p.add_argument("--warmup", type=cli.non_negative_int, default=2, help="untimed calls per case")
    cli.add_repeats(p, 10, help="timed calls per case")
    cli.add_image_size(p, 32, model="vgg19", rule=SIZE_RULES["vgg19"], dest="vgg_size",
                       help="VGG19 input size for exp. 3")
    p.add_argument("--vgg-batch", type=cli.positive_int, default=8, help="VGG19 batch for exp. 3")
    p.add_argument("--lenet-batch", type=cli.positive_int, default=256, help="LeNet-5 batch for exp. 3")
    p.add_argument("--model", action="append", default=[],
                   help="exp. 3 also on this model's forward pass (repeatable): " + cli.MODEL_HELP)
    p.add_argument("--model-batch", type=cli.positive_int, default=1, help="batch of the --model forward passes")
    cli.add_model_source(p)
    cli.add_logdir(p, help="where reports go")
    cli.add_verbose(p)
    return p


def parse_args(argv: Sequence[str] | None, prog: str) -> argparse.Namespace:
    """Parse, keep TensorFlow's start-up lines quiet, and check the output folder before any work."""
    ns = cli.parse(build_parser(prog), argv)
    return ns


def _parse_experiments(text: str) -> list[int]:
    try:
        chosen = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        chosen = []
    if not chosen or not set(chosen) <= {1, 2, 3, 4}:
        raise UserError(f"--experiments must be a comma-separated subset of 1,2,3,4, got {text!r}")
    return chosen


def run_experiments(ns: argparse.Namespace) -> list[timing.Timing]:
    """Run the chosen experiments with a progress bar; return all timing rows."""
    from tqdm import tqdm

    problem = input_size_error("vgg19", ns.vgg_size)  # the registry's rule, also for callers that skip parsing
    if problem:
        raise UserError(problem)
    chosen = _parse_experiments(ns.experiments)
    user_models = []
    if getattr(ns, "model", None):
        from tfbench.models import load

        shape = load.parse_input_shape(ns.input_shape) if ns.input_shape else None
        user_models = [load.load(ref, input_shape=shape, allow_code=ns.allow_code) for ref in ns.model]
    conv = QUICK_CONV if ns.quick else CONV_SHAPES
    w, r = ns.warmup, ns.repeats
    jobs: dict[int, Callable[[], list[timing.Timing]]] = {
        1: lambda: exp1_conv_bias_relu(conv, w, r),
        2: lambda: exp2_conv_bn_relu(QUICK_CONV if ns.quick else BN_SHAPES, w, r),
        3: lambda: exp3_xla(conv if ns.quick else [CONV_SHAPES[0], CONV_SHAPES[2]],
                            QUICK_CONV[:1] if ns.quick else BN_SHAPES[:1], QUICK_CHAIN if ns.quick else CHAIN_SHAPES,
                            vgg_size=ns.vgg_size,
                            vgg_batch=ns.vgg_batch, lenet_batch=ns.lenet_batch, models=not ns.quick,
                            warmup=w, repeats=r, user_models=user_models,
                            user_batch=getattr(ns, "model_batch", 1)),
        4: lambda: exp4_dense_bias_relu(QUICK_DENSE if ns.quick else DENSE_SHAPES, w, r),
    }
    rows: list[timing.Timing] = []
    with _quiet_retracing():
        for n in tqdm(chosen, desc="fusion experiments", unit="exp", disable=None):
            rows += jobs[n]()
    return rows


def _report(ns: argparse.Namespace, rows: list[timing.Timing], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    ratios = {f"{t.case} vs {t.extra['vs']}": t.extra["speedup"] for t in rows if t.extra["vs"]}
    info = {"onednn": onednn_enabled(), "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "quick": ns.quick, "vgg_size": ns.vgg_size, "vgg_batch": ns.vgg_batch, "lenet_batch": ns.lenet_batch,
            "tolerance": TOLERANCE, "speedup": "baseline median / variant median (> 1: variant faster)"}
    info.update(extra or {})
    data = timing.report("fusion", rows, ratios, logdir=ns.logdir, extra=info, quiet=True)
    timing.print_header("fusion")
    print(summary_table(data["rows"]))
    print(f"oneDNN kernels: {'on' if info['onednn'] else 'off'}; report: {data['path']}")
    return data


def run_benchmark(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m tfbench.bench fusion``: run the experiments, write ``logs/bench/fusion-<ts>.json``."""
    ns = parse_args(argv, "bench fusion")
    return _report(ns, run_experiments(ns))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tfbench.fusion``: the experiments, plus the HLO before/after fusion under ``logs/fusion/<ts>/``."""
    ns = parse_args(argv, "fusion")
    rows = run_experiments(ns)
    run = paths.run_dir(ns.logdir, "fusion")
    hlo = write_hlo(run)
    data = _report(ns, rows, {"hlo": hlo})
    write_tensorboard(run, data["rows"])
    print(f"HLO of the 10-op elementwise chain: {hlo['hlo']['kernels']} ops before XLA's passes, "
          f"{hlo['optimized_hlo']['kernels']} kernel(s) after ({dict(hlo['optimized_hlo']['entry_ops'])}); "
          f"files in {run}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
