"""What grappler does to a graph: before/after/partition views, per-pass toggles, pruning logs (ex. 5.10).

A ``tf.function`` is traced into a graph, then grappler (TensorFlow's graph optimiser, a
sequence of passes run by its "meta optimizer") rewrites it before it is partitioned per
device and executed.  This module shows all three stages of one call:

    python -m tfbench.graphs show conv_bias_relu            # op counts pre / post / partition
    python -m tfbench.graphs show vgg19 --size 224 --disable remapping
    python -m tfbench.graphs show resnet_block --ablate     # what each pass changes, one off at a time
    python -m tfbench.graphs vlog lenet5                    # grappler's own log, per pass (the "pruning logs")

``show`` writes each graph as its own TensorBoard run under
``logs/graphs/<timestamp>/<model>/{pre,post,partition}`` (TensorBoard's trace view shows only
the graph *before* grappler).  ``vlog`` runs the model in a subprocess with
``TF_CPP_VMODULE=meta_optimizer=1,remapper=2,...`` because TensorFlow reads its logging
variables once, at start-up; the log is saved beside the summary.

Grappler options are process-global (``tf.config.optimizer.set_experimental_options``);
:func:`grappler_options` sets them for a block and restores the previous ones afterwards.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import tensorflow as tf

from tfbench import paths
from tfbench.errors import UserError, run_cli
from tfbench.files import atomic_output
from tfbench.grappler import BOOKKEEPING_OPS, grappler_options, onednn_enabled
from tfbench.summaries import FunctionGraphs, capture_function_graphs, op_counts, write_graph

# CLI name -> (tf.config.optimizer option, value that turns the pass OFF)
PASSES: dict[str, tuple[str, bool]] = {
    "remapping": ("remapping", False),            # op fusion: Conv2D+BiasAdd+Relu -> _FusedConv2D, ...
    "constfold": ("constant_folding", False),     # evaluate constant subgraphs at optimisation time
    "arithmetic": ("arithmetic_optimization", False),  # algebraic rewrites, unary-op composition
    "layout": ("layout_optimizer", False),        # NHWC <-> NCHW transposes (GPU)
    "pruning": ("disable_model_pruning", True),   # model_pruner: drop Identity/NoOp nodes nothing needs
    "dependency": ("dependency_optimization", False),  # remove redundant control dependencies
    "loop": ("loop_optimization", False),         # hoist loop invariants
    "function": ("function_optimization", False),  # inline and specialise function calls
    "shape": ("shape_optimization", False),       # simplify Shape/Size computations
    "debug_stripper": ("debug_stripper", False),  # (off by default) strip Assert/Print
    "implementation_selector": ("implementation_selector", False),  # pick CPU/GPU function variants
    "meta": ("disable_meta_optimizer", True),     # all of grappler
}

#: What ``vlog`` asks for by default: the meta optimizer's per-pass sizes, and what the passes did.
DEFAULT_VMODULE = ("meta_optimizer=1,model_pruner=1,remapper=2,constant_folding=1,"
                   "arithmetic_optimizer=1,dependency_optimizer=1")


def disabled_options(names: Sequence[str]) -> dict[str, bool]:
    """The option dict that turns off the named passes (CLI names from :data:`PASSES`)."""
    options = {}
    for name in names:
        if name not in PASSES:
            raise UserError(f"unknown grappler pass {name!r}; choose from {', '.join(PASSES)}")
        key, off = PASSES[name]
        options[key] = off
    return options


def parse_pass_list(text: str) -> list[str]:
    """``"remapping,constfold"`` -> ``["remapping", "constfold"]`` (validated)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    disabled_options(names)
    return names


# ---------------------------------------------------------------- the models

@dataclass
class Workload:
    """A model to look at: a Python callable to wrap in ``tf.function`` and one example input."""

    name: str
    call: Callable[[tf.Tensor], tf.Tensor]
    inputs: tf.Tensor
    note: str = ""


def build_workload(model: str, *, size: int | None = None, batch: int = 1, keras: bool = False,
                   seed: int = 0) -> Workload:
    """Build one of :data:`MODELS` with seeded weights and a seeded input."""
    from tfbench.models import blocks

    rng_input = lambda shape: tf.random.stateless_normal(shape, seed=[seed, 1])  # noqa: E731
    if model == "vgg19":
        from tfbench.models import vgg19

        size = size or vgg19.INPUT_SIZE
        try:
            vgg19.layer_specs(input_size=size)
        except ValueError as err:
            raise UserError(f"--size {size}: {err}") from None
        net = (vgg19.build_keras_vgg19(seed=seed, input_size=size) if keras
               else vgg19.VGG19Module(seed=seed, input_size=size))
        call = (lambda x: net(x, training=False)) if keras else net
        return Workload(model, call, rng_input([batch, size, size, 3]), f"{'Keras' if keras else 'tf.Module'} {size}x{size}")
    if model == "lenet5":
        from tfbench.models import lenet5

        if size not in (None, 32):
            raise UserError(f"--size {size}: LeNet-5 takes 32x32x1 inputs only")
        net = lenet5.build_keras_lenet5(seed=seed) if keras else lenet5.LeNet5Module(seed=seed)
        call = (lambda x: net(x, training=False)) if keras else net
        return Workload(model, call, rng_input([batch, *lenet5.INPUT_SHAPE]), "Keras" if keras else "tf.Module")
    if keras:
        raise UserError(f"--keras applies to vgg19 and lenet5, not {model!r}")
    size = size or 14
    if model == "conv_bias_relu":
        shape = blocks.ConvShape(batch, size, 64, 64, 3)
        return Workload(model, blocks.ConvBiasRelu(shape, seed), shape.input(seed), shape.label)
    if model == "conv_bn_relu":
        shape = blocks.ConvShape(batch, size, 64, 64, 3)
        net = blocks.keras_conv_bn_relu(shape, seed)
        return Workload(model, lambda x: net(x, training=False), shape.input(seed), f"Keras {shape.label}")
    if model == "resnet_block":
        net = blocks.ResNetBlock(size, 64, batch, seed)
        return Workload(model, net, net.shape.input(seed), net.shape.label)
    if model == "elementwise_chain":
        return Workload(model, blocks.ElementwiseChain(), rng_input([batch, size, size, 64]), f"{size}x{size}x64")
    raise UserError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")


MODELS: dict[str, str] = {
    "vgg19": "VGG19 forward (tf.Module, or --keras), --size 224 by default",
    "lenet5": "LeNet-5 forward on 32x32x1 (tanh + average pooling, as in the paper)",
    "conv_bias_relu": "Conv2D -> BiasAdd -> Relu (64 -> 64 channels, 3x3)",
    "conv_bn_relu": "Keras Conv2D -> BatchNormalization -> ReLU at inference",
    "resnet_block": "ResNet basic block with FusedBatchNorm and the identity shortcut",
    "elementwise_chain": "ten elementwise ops in a row",
}


# ---------------------------------------------------------------- capture and tables

def capture(workload: Workload, disable: Sequence[str] = ()) -> FunctionGraphs:
    """The three graphs of one call of a fresh ``tf.function`` of ``workload``, with passes disabled."""
    with grappler_options(**disabled_options(disable)):
        return capture_function_graphs(tf.function(workload.call), workload.inputs)


def count_table(graphs: FunctionGraphs) -> list[tuple[str, int, int, int]]:
    """``(op, pre, post, partition)`` rows, compute ops first, then by descending pre count."""
    pre, post = op_counts(graphs.pre_optimization), op_counts(graphs.post_optimization)
    part: collections.Counter = collections.Counter()
    for g in graphs.partitions:
        part.update(op_counts(g))
    ops = set(pre) | set(post) | set(part)
    rows = [(op, pre[op], post[op], part[op]) for op in ops]
    rows.sort(key=lambda r: (r[0] in BOOKKEEPING_OPS, -max(r[1:]), r[0]))
    return rows


def format_count_table(rows: Sequence[tuple[str, int, int, int]]) -> str:
    """The rows as text, with a marker on the ops grappler changed and a total line."""
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"{'op':{width}s}  {'pre':>5s}  {'post':>5s}  {'partition':>9s}", "-" * (width + 27)]
    for op, pre, post, part in rows:
        mark = "  <- changed" if pre != post or post != part else ""
        lines.append(f"{op:{width}s}  {pre:5d}  {post:5d}  {part:9d}{mark}")
    totals = [sum(r[i] for r in rows) for i in (1, 2, 3)]
    lines.append("-" * (width + 27))
    lines.append(f"{'total':{width}s}  {totals[0]:5d}  {totals[1]:5d}  {totals[2]:9d}")
    return "\n".join(lines)


def count_diff(before: collections.Counter, after: collections.Counter) -> str:
    """``"-Conv2D 1, +_FusedConv2D 1"``: how ``after`` differs from ``before``, or ``"(same)"``."""
    parts = []
    for op in sorted(set(before) | set(after)):
        delta = after[op] - before[op]
        if delta:
            parts.append(f"{'+' if delta > 0 else '-'}{op} {abs(delta)}")
    return ", ".join(parts) or "(same)"


def ablate(workload: Workload, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Capture once with everything on, then once per pass with only that pass off.

    Each row says how the post-grappler graph differs from the all-on graph when the pass is
    off, i.e. what that pass contributes (``+Conv2D 1`` with remapping off: remapping removes it).
    """
    base = op_counts(capture(workload).post_optimization)
    rows = []
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # each capture retraces on purpose; the retracing warning is noise here
    try:
        posts = {name: op_counts(capture(workload, [name]).post_optimization)
                 for name in names or [n for n in PASSES if n != "debug_stripper"]}
    finally:
        logger.setLevel(level)
    for name, post in posts.items():
        rows.append({"pass_off": name, "nodes": sum(post.values()), "nodes_all_on": sum(base.values()),
                     "difference_vs_all_on": count_diff(base, post)})
    return rows


def write_graphs(run: Path, graphs: FunctionGraphs) -> list[Path]:
    """Write pre, post and each partition graph as its own TensorBoard run under ``run``."""
    written = []
    for label, graph_def in [("pre", graphs.pre_optimization), ("post", graphs.post_optimization)] + [
            ("partition" if i == 0 else f"partition_{i}", g) for i, g in enumerate(graphs.partitions)]:
        write_graph(run / label, graph_def)
        written.append(run / label)
    return written


# ---------------------------------------------------------------- the VLOG capture

@dataclass
class PassStat:
    """One line of the meta optimizer's log: a pass, the graph size after it and the time it took."""

    item: str
    name: str
    nodes: int
    nodes_delta: int
    edges: int
    edges_delta: int
    time_ms: float


@dataclass
class VlogSummary:
    """What grappler said about one run: per-pass sizes, and the lines of the passes themselves."""

    passes: list[PassStat] = field(default_factory=list)
    messages: dict[str, list[str]] = field(default_factory=dict)  # source file -> messages


_PASS_RE = re.compile(r"meta_optimizer\.cc:\d+\] (?P<name>.+?): Graph size after: (?P<nodes>\d+) nodes "
                      r"\((?P<dn>-?\d+)\), (?P<edges>\d+) edges \((?P<de>-?\d+)\), time = (?P<ms>[\d.e+-]+)ms")
_ITEM_RE = re.compile(r"meta_optimizer\.cc:\d+\] Starting optimization for grappler item: (?P<item>\S+)")
_LINE_RE = re.compile(r"\b(?P<file>[A-Za-z0-9_]+)\.cc:\d+\] (?P<msg>.*)")


def vlog_env(vmodule: str = DEFAULT_VMODULE, max_vlog_level: int | None = None) -> dict[str, str]:
    """The environment that makes TensorFlow 2.21 print grappler's VLOG lines.

    ``TF_CPP_MIN_LOG_LEVEL`` must be 0 (VLOG lines are INFO messages, and tfbench sets it to 2);
    ``TF_CPP_VMODULE`` enables chosen source files; ``TF_CPP_MAX_VLOG_LEVEL`` enables every file
    up to a level (very noisy).  ``TF_CPP_MIN_VLOG_LEVEL`` has no effect any more.
    """
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    env["TF_CPP_VMODULE"] = vmodule
    if max_vlog_level is not None:
        env["TF_CPP_MAX_VLOG_LEVEL"] = str(max_vlog_level)
    return env


def parse_vlog(text: str) -> VlogSummary:
    """Pull the per-pass sizes and the optimizer messages out of a captured log."""
    summary = VlogSummary()
    item = "?"
    for line in text.splitlines():
        if m := _ITEM_RE.search(line):
            item = m["item"]
        elif m := _PASS_RE.search(line):
            name = re.sub(r"\{.*\}", "", m["name"])  # tfg_optimizer{long pipeline} -> tfg_optimizer
            summary.passes.append(PassStat(item, name, int(m["nodes"]), int(m["dn"]), int(m["edges"]),
                                           int(m["de"]), float(m["ms"])))
        elif (m := _LINE_RE.search(line)) and m["file"] not in ("meta_optimizer", "cpu_feature_guard",
                                                                  "cudart_stub", "cuda_platform", "port"):
            summary.messages.setdefault(m["file"], []).append(m["msg"])
    return summary


def format_vlog_summary(summary: VlogSummary) -> str:
    """Per grappler item: the passes in order with node counts before -> after, then what the passes logged."""
    lines = []
    items: dict[str, list[PassStat]] = {}
    for stat in summary.passes:
        items.setdefault(stat.item, []).append(stat)
    for item, stats in items.items():
        lines.append(f"grappler item {item}:")
        lines.append(f"  {'pass':28s} {'nodes':>13s} {'edges':>13s} {'ms':>8s}")
        for s in stats:
            lines.append(f"  {s.name:28s} {s.nodes - s.nodes_delta:5d} -> {s.nodes:<5d} "
                         f"{s.edges - s.edges_delta:5d} -> {s.edges:<5d} {s.time_ms:8.3f}")
        changed = sorted({s.name for s in stats if s.nodes_delta or s.edges_delta})
        lines.append(f"  passes that changed the graph: {', '.join(changed) or 'none'}")
    for source, messages in summary.messages.items():
        counts = collections.Counter(messages)
        lines.append(f"{source}: {len(messages)} line(s)")
        for msg, n in counts.most_common(8):
            lines.append(f"  {n:3d} x {msg[:150]}")
    return "\n".join(lines) or "(no grappler log lines captured)"


def capture_vlog(model: str, *, size: int | None = None, batch: int = 1, keras: bool = False,
                 vmodule: str = DEFAULT_VMODULE, max_vlog_level: int | None = None,
                 disable: Sequence[str] = (), timeout: float = 600) -> str:
    """Run ``model`` once in a fresh Python with grappler's VLOG switched on; return its stderr."""
    cmd = [sys.executable, "-m", "tfbench.graphs", "run", model, "--batch", str(batch)]
    if size:
        cmd += ["--size", str(size)]
    if keras:
        cmd.append("--keras")
    if disable:
        cmd += ["--disable", ",".join(disable)]
    proc = subprocess.run(cmd, env=vlog_env(vmodule, max_vlog_level), capture_output=True, text=True,
                          timeout=timeout, cwd=paths.REPO_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with code {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stderr


# ---------------------------------------------------------------- CLI

def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=list(MODELS), help="what to look at")
    p.add_argument("--size", type=int, default=None,
                   help="input height/width (vgg19: multiple of 32, default 224; blocks: default 14)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--keras", action="store_true", help="vgg19/lenet5: the Keras model instead of the tf.Module")
    p.add_argument("--disable", type=parse_pass_list, default=[],
                   help=f"comma-separated grappler passes to turn off: {', '.join(PASSES)}")


def build_parser() -> argparse.ArgumentParser:
    """The ``show`` / ``vlog`` / ``run`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tfbench.graphs", description=__doc__.split("\n\n")[0],
        epilog="models:\n" + "\n".join(f"  {k:18s} {v}" for k, v in MODELS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="op counts before/after grappler and in the partition graphs; "
                                       "TensorBoard runs")
    _add_model_args(show)
    show.add_argument("--ablate", action="store_true", help="also turn each pass off alone and show what it changed")
    show.add_argument("--logdir", default=str(paths.DEFAULT_LOGDIR), help="where runs go (default logs)")
    vlog = sub.add_parser("vlog", help="run the model in a subprocess with grappler's VLOG on; per-pass summary")
    _add_model_args(vlog)
    vlog.add_argument("--vmodule", default=DEFAULT_VMODULE, help=f"TF_CPP_VMODULE (default {DEFAULT_VMODULE})")
    vlog.add_argument("--max-vlog-level", type=int, default=None,
                      help="also set TF_CPP_MAX_VLOG_LEVEL (every source file; thousands of lines)")
    vlog.add_argument("--logdir", default=str(paths.DEFAULT_LOGDIR), help="where the log goes (default logs)")
    run = sub.add_parser("run", help="call the model's tf.function once (what vlog runs in its subprocess)")
    _add_model_args(run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``show`` / ``vlog`` / ``run``; see ``--help``."""
    ns = build_parser().parse_args(argv)
    if ns.batch < 1:
        raise UserError(f"--batch must be at least 1, got {ns.batch}")
    if ns.command == "vlog":
        return _vlog(ns)
    workload = build_workload(ns.model, size=ns.size, batch=ns.batch, keras=ns.keras)
    if ns.command == "run":
        with grappler_options(**disabled_options(ns.disable)):
            tf.function(workload.call)(workload.inputs).numpy()
        return 0
    graphs = capture(workload, ns.disable)
    label = ns.model + ("-keras" if ns.keras else "") + "".join(f"-no_{n}" for n in ns.disable)
    run = paths.run_dir(ns.logdir, "graphs") / label
    write_graphs(run, graphs)
    print(f"{ns.model} ({workload.note}), batch {ns.batch}; disabled: {', '.join(ns.disable) or 'nothing'}; "
          f"oneDNN kernels: {'on' if onednn_enabled() else 'off'}")
    print(format_count_table(count_table(graphs)))
    if ns.ablate:
        from tfbench.bench import format_table

        print("\nwhat each pass changes (post-grappler graph with that pass off, vs all passes on):")
        print(format_table(ablate(workload)))
    print(f"TensorBoard runs: {run}/{{pre,post,partition}}  (tensorboard --logdir {ns.logdir}/graphs)")
    return 0


def _vlog(ns: argparse.Namespace) -> int:
    text = capture_vlog(ns.model, size=ns.size, batch=ns.batch, keras=ns.keras, vmodule=ns.vmodule,
                        max_vlog_level=ns.max_vlog_level, disable=ns.disable)
    run = paths.run_dir(ns.logdir, "graphs")
    log_path = run / f"{ns.model}-vlog.txt"
    with atomic_output(log_path) as tmp:
        tmp.write_text(text)
    summary = format_vlog_summary(parse_vlog(text))
    with atomic_output(run / f"{ns.model}-vlog-summary.txt") as tmp:
        tmp.write_text(summary + "\n")
    print(f"TF_CPP_MIN_LOG_LEVEL=0 TF_CPP_VMODULE={ns.vmodule}"
          + (f" TF_CPP_MAX_VLOG_LEVEL={ns.max_vlog_level}" if ns.max_vlog_level is not None else ""))
    print(summary)
    print(f"full log: {log_path}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
