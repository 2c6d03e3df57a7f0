"""Grappler's passes on a real model (exercise 5.10): the workloads (registry models, user files, fusion
blocks), the graphs captured with passes switched off one at a time, and the per-pass log lines
TensorFlow writes with ``TF_CPP_VMODULE`` parsed into a summary.  The switches are
:mod:`tfbench.rewriting.grappler`.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tfbench.models import registry
from tfbench.plumbing.errors import UserError
from tfbench.rewriting import grappler

if TYPE_CHECKING:  # for annotations; TensorFlow loads inside the functions that use it, after parsing
    import tensorflow as tf

    from tfbench.reporting.summaries import FunctionGraphs


#: the folder holding this tfbench package: the child process runs from there, so it imports the same tfbench
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]

#: What ``vlog`` asks for by default: the meta optimizer's per-pass sizes, and what the passes did.
DEFAULT_VMODULE = ("meta_optimizer=1,model_pruner=1,remapper=2,constant_folding=1,"
                   "arithmetic_optimizer=1,dependency_optimizer=1")


@dataclass
class Workload:
    """A model to look at: a Python callable to wrap in ``tf.function`` and one example input."""

    name: str
    call: Callable[[tf.Tensor], tf.Tensor]
    inputs: tf.Tensor
    note: str = ""


def build_workload(model: str, *, size: int | None = None, batch: int = 1, keras: bool = False,
                   seed: int = 0, input_shape: str | None = None, allow_code: bool = False) -> Workload:
    """Build one of :data:`MODELS` with seeded weights and a seeded input, or load a model file or factory."""
    import tensorflow as tf

    if model not in MODELS:
        from tfbench.models import load

        loaded = load.load(model, input_shape=load.parse_input_shape(input_shape) if input_shape else None,
                           allow_code=allow_code, seed=seed)
        x = tf.cast(tf.random.stateless_normal([batch, *loaded.input_shape], seed=[seed, 1]), loaded.input_dtype)
        return Workload(loaded.name, loaded.call, x, f"{loaded.source} {'x'.join(map(str, loaded.input_shape))}")

    from tfbench.models import blocks

    rng_input = lambda shape: tf.random.stateless_normal(shape, seed=[seed, 1])  # noqa: E731
    if model in ("vgg19", "lenet5"):  # built by the registry, which checks the input size
        from tfbench import models

        size = size or registry.SIZE_RULES[model].native
        net = models.get(model, impl="keras" if keras else "module", input_size=size, seed=seed)
        call = (lambda x: net(x, training=False)) if keras else net
        channels = registry.SIZE_RULES[model].channels
        note = f"{'Keras' if keras else 'tf.Module'} {size}x{size}x{channels}"
        return Workload(model, call, rng_input([batch, size, size, channels]), note)
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
    raise UserError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")  # pragma: no cover


MODELS: dict[str, str] = {
    "vgg19": "VGG19 forward (tf.Module, or --keras), --image-size 224 by default",
    "lenet5": "LeNet-5 forward on 32x32x1 (tanh + average pooling, as in the paper)",
    "conv_bias_relu": "Conv2D -> BiasAdd -> Relu (64 -> 64 channels, 3x3)",
    "conv_bn_relu": "Keras Conv2D -> BatchNormalization -> ReLU at inference",
    "resnet_block": "ResNet basic block with FusedBatchNorm and the identity shortcut",
    "elementwise_chain": "ten elementwise ops in a row",
}


def capture(workload: Workload, disable: Sequence[str] = ()) -> FunctionGraphs:
    """The three graphs of one call of a fresh ``tf.function`` of ``workload``, with passes disabled."""
    return grappler.capture(workload.call, workload.inputs, disable)


def ablate(workload: Workload, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """What each pass contributes: :func:`tfbench.rewriting.grappler.ablate` on the workload."""
    return grappler.ablate(workload.call, workload.inputs, names)


def write_graphs(run: Path, graphs: FunctionGraphs, ablation: Sequence[dict[str, Any]] = ()) -> list[Path]:
    """Write pre, post and each partition graph as its own TensorBoard run under ``run``, with readable names.

    The ``post`` run also gets a Text card: the op counts before/after grappler (and, with
    ``ablation``, what each pass changes); fused nodes are named after what they fused.
    """
    return grappler.write_runs(run, graphs, ablation)


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
                 disable: Sequence[str] = (), timeout: float = 600, input_shape: str | None = None,
                 allow_code: bool = False) -> str:
    """Run ``model`` once in a fresh Python with grappler's VLOG switched on; return its stderr."""
    if model not in MODELS and Path(model).exists():
        model = str(Path(model).resolve())  # the subprocess runs in the checkout
    cmd = [sys.executable, "-m", "tfbench.graphs", "run", model, "--batch", str(batch)]
    if input_shape:
        cmd += ["--input-shape", input_shape]
    if allow_code:
        cmd.append("--allow-code")
    if size:
        cmd += ["--image-size", str(size)]
    if keras:
        cmd.append("--keras")
    if disable:
        cmd += ["--disable", ",".join(disable)]
    env = vlog_env(vmodule, max_vlog_level)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), os.getcwd()) if p)  # factories
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=_PACKAGE_PARENT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with code {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc.stderr
