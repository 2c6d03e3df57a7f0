"""Fused against unfused ops, measured (exercise 5.11): grappler's remapper (Conv2D+BiasAdd+Relu, MatMul+
BiasAdd+Relu), batch-norm folding, and XLA on elementwise chains and whole models, each variant timed
round robin and checked against the first; the HLO before and after XLA's fusion.
"""

from __future__ import annotations

import collections
import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from tfbench import timing
from tfbench.models.shapes import ConvShape, DenseShape
from tfbench.plumbing.files import atomic_output
from tfbench.rewriting.grappler import BOOKKEEPING_OPS, grappler_options

if TYPE_CHECKING:  # for annotations; TensorFlow loads inside the functions that use it, after parsing
    import tensorflow as tf


TOLERANCE = 1e-4  # max abs difference allowed between fused and unfused float32 outputs


#: Experiment 1 (and 3): from compute-bound to memory-bound conv layers.
CONV_SHAPES = [ConvShape(1, 56, 256, 256, 3), ConvShape(1, 28, 128, 128, 3), ConvShape(32, 14, 64, 64, 1),
               ConvShape(64, 7, 32, 32, 1), ConvShape(256, 4, 16, 16, 1)]


#: Experiment 2: conv + BN + relu.
BN_SHAPES = [ConvShape(1, 56, 64, 64, 3), ConvShape(8, 14, 256, 256, 1), ConvShape(64, 7, 32, 32, 1)]


#: Experiment 3: the elementwise chain's input shapes (NHWC).
CHAIN_SHAPES = [(1, 8, 8, 64), (1, 56, 56, 64), (8, 56, 56, 64)]


#: Experiment 4: VGG19's fc7 at batch 1 and 64, LeNet-5's f5 and f6 at batch 256.
DENSE_SHAPES = [DenseShape(1, 4096, 4096), DenseShape(64, 4096, 4096), DenseShape(256, 400, 120),
                DenseShape(256, 120, 84)]


QUICK_CONV = [ConvShape(1, 8, 8, 8, 3), ConvShape(16, 4, 4, 4, 1)]


QUICK_CHAIN = [(1, 4, 4, 8)]


QUICK_DENSE = [DenseShape(4, 32, 16)]


@dataclass
class Variant:
    """One way of computing the same thing: a fresh ``tf.function``, the grappler options it runs under."""

    name: str
    fn: Callable[..., Any]
    options: dict[str, Any]
    xla: bool = False

    def context(self) -> contextlib.AbstractContextManager:
        """Grappler options apply when a function is instantiated, so calls (and timing) happen inside."""
        return grappler_options(**self.options) if self.options else contextlib.nullcontext()


UNFUSED = {"remapping": False}


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference over two nested structures of tensors."""
    import tensorflow as tf

    diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b))]
    return max(diffs) if diffs else 0.0


HLO_BOOKKEEPING = frozenset({"parameter", "constant", "tuple", "get-tuple-element", "reshape", "broadcast", "bitcast"})


def _join_counts(counts: collections.Counter, skip: frozenset) -> str:
    return "+".join(f"{op}x{n}" if n > 1 else op for op, n in sorted(counts.items()) if op not in skip)


def compute_ops(variant: Variant, args: Sequence[Any]) -> str:
    """What actually runs: the partition graph's compute ops (``_FusedConv2D``), or XLA's kernels (``HLO: fusion``)."""
    import tensorflow as tf

    from tfbench.reporting.summaries import capture_function_graphs, op_counts

    if variant.xla:
        text = variant.fn.experimental_get_compiler_ir(*args)(stage="optimized_hlo")
        return "HLO: " + _join_counts(hlo_entry_ops(text), HLO_BOOKKEEPING)
    python_fn = getattr(variant.fn, "python_function", variant.fn)
    with grappler_options(**variant.options):
        graphs = capture_function_graphs(tf.function(python_fn), *args)
    counts: collections.Counter = collections.Counter()
    for partition in graphs.partitions:  # after grappler and placement: _MklNative* kernels show up here
        counts.update(op_counts(partition))
    return _join_counts(counts, BOOKKEEPING_OPS)


@contextlib.contextmanager
def _quiet_retracing():
    """Every graph capture traces a fresh copy on purpose; TensorFlow's retracing warning is noise here."""
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


def measure_interleaved(variants: Sequence[Variant], args: Sequence[Any], *, warmup: int,
                        repeats: int) -> list[list[float]]:
    """Per variant, ``repeats`` timings (ms) taken in alternating rounds, A B, B A, A B, ...

    On a shared machine the load changes from second to second; timing the variants in turn
    lets both see the same load, so their ratio means something.  Each timed call goes through
    ``timing.measure`` (one call, blocking on the result) inside the variant's grappler options.
    """
    for v in variants:
        with v.context():
            for _ in range(warmup):
                timing.block(v.fn(*args))
    times: list[list[float]] = [[] for _ in variants]
    for r in range(repeats):
        order = range(len(variants)) if r % 2 == 0 else reversed(range(len(variants)))
        for i in order:
            v = variants[i]
            with v.context():
                times[i].append(timing.measure(v.name, lambda: v.fn(*args), warmup=0, repeats=1).median_ms)
    return times


def compare(experiment: str, shape: str, variants: Sequence[Variant], args: Sequence[Any], *,
            warmup: int, repeats: int, show_graph: bool = True, check: Callable[[], float] | None = None
            ) -> list[timing.Timing]:
    """Check the variants agree, then time them interleaved; the first is the baseline.

    ``check`` (optional) replaces the output comparison, for functions with side effects
    (training steps): it returns the max abs difference it measured.
    """
    outputs = []
    for v in variants:
        with v.context():
            outputs.append(timing.block(v.fn(*args)))
    diffs = ([max_abs_diff(outputs[0], out) for out in outputs] if check is None
             else [0.0] + [check()] * (len(variants) - 1))
    graphs = [compute_ops(v, args) if show_graph else "" for v in variants]
    times = measure_interleaved(variants, args, warmup=warmup, repeats=repeats)
    rows = [timing.summarise(f"{experiment} | {shape} | {v.name}", t, dict(
                experiment=experiment, shape=shape, variant=v.name,
                max_abs_diff=diff, agree=bool(diff <= TOLERANCE), graph=graph))
            for v, t, diff, graph in zip(variants, times, diffs, graphs)]
    base = rows[0].median_ms
    for i, t in enumerate(rows):
        t.extra["speedup"] = base / t.median_ms
        t.extra["vs"] = variants[0].name if i else ""
    return rows


def exp1_conv_bias_relu(shapes: Sequence[ConvShape], warmup: int, repeats: int) -> list[timing.Timing]:
    """Remapper on vs off for Conv2D + BiasAdd + Relu."""
    import tensorflow as tf

    from tfbench.models import blocks

    rows = []
    for shape in shapes:
        net, x = blocks.ConvBiasRelu(shape), shape.input()
        rows += compare("1 conv+bias+relu", shape.label, [
            Variant("unfused (remapper off)", tf.function(net.__call__), UNFUSED),
            Variant("fused _FusedConv2D", tf.function(net.__call__), {})], [x], warmup=warmup, repeats=repeats)
    return rows


def exp2_conv_bn_relu(shapes: Sequence[ConvShape], warmup: int, repeats: int) -> list[timing.Timing]:
    """Keras BN vs FusedBatchNorm (remapper-fused) vs BN folded into the conv, at inference."""
    import tensorflow as tf

    from tfbench.models import blocks

    rows = []
    for shape in shapes:
        model, x = blocks.keras_conv_bn_relu(shape), shape.input()
        kernel, stats = blocks.keras_bn_weights(model)
        fused = blocks.FusedBNConvRelu(kernel, stats)
        folded = blocks.ConvBiasRelu(shape, kernel=blocks.fold_batch_norm(kernel, None, **stats)[0],
                                     bias=blocks.fold_batch_norm(kernel, None, **stats)[1])
        rows += compare("2 conv+BN+relu", shape.label, [
            Variant("Keras BN layer", tf.function(lambda t: model(t, training=False)), {}),
            Variant("FusedBatchNormV3, remapper off", tf.function(fused.__call__), UNFUSED),
            Variant("FusedBatchNormV3 (remapper)", tf.function(fused.__call__), {}),
            Variant("BN folded into conv", tf.function(folded.__call__), {})], [x], warmup=warmup, repeats=repeats)
    return rows


def sgd_step(module: tf.Module, learning_rate: float = 1e-3) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """One plain SGD training step on ``module`` (logits) with softmax cross-entropy; returns the loss."""
    import tensorflow as tf

    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, module(x)))
        for var, grad in zip(module.trainable_variables, tape.gradient(loss, module.trainable_variables)):
            var.assign_sub(learning_rate * grad)
        return loss
    return step


def _xla_pair(name: str, fn: Callable[..., Any]) -> list[Variant]:
    import tensorflow as tf

    return [Variant("default (grappler)", tf.function(fn), {}),
            Variant("XLA jit_compile", tf.function(fn, jit_compile=True), {}, xla=True)]


def _train_pair(experiment: str, label: str, make: Callable[[], tf.Module], x: tf.Tensor, y: tf.Tensor,
                warmup: int, repeats: int) -> list[timing.Timing]:
    """Time a training step default vs XLA on two identically seeded models; check one step agrees."""
    import tensorflow as tf

    nets = [make(), make()]
    steps = [tf.function(sgd_step(nets[0])), tf.function(sgd_step(nets[1]), jit_compile=True)]
    losses = [timing.block(s(x, y)) for s in steps]  # first step of each, same starting weights

    def check() -> float:
        return max(max_abs_diff(losses[0], losses[1]),
                   max_abs_diff([v.numpy() for v in nets[0].trainable_variables],
                                [v.numpy() for v in nets[1].trainable_variables]))
    diff = check()
    return compare(experiment, label, [Variant("default (grappler)", steps[0], {}),
                                       Variant("XLA jit_compile", steps[1], {}, xla=True)],
                   [x, y], warmup=warmup, repeats=repeats, show_graph=False, check=lambda: diff)


def exp3_xla(conv_shapes: Sequence[ConvShape], bn_shapes: Sequence[ConvShape],
             chain_shapes: Sequence[tuple[int, ...]], *, vgg_size: int,
             vgg_batch: int, lenet_batch: int, models: bool, warmup: int, repeats: int,
             user_models: Sequence[Any] = (), user_batch: int = 1) -> list[timing.Timing]:
    """XLA vs default on conv blocks (with Keras BN too), the elementwise chain, VGG19 and LeNet-5,
    and the forward pass of each of ``user_models`` (:class:`tfbench.models.load.LoadedModel`)."""
    import tensorflow as tf

    from tfbench.models import blocks, lenet5, vgg19

    rows = []
    for shape in conv_shapes:
        net = blocks.ConvBiasRelu(shape)
        rows += compare("3 XLA conv+bias+relu", shape.label, _xla_pair(shape.label, net.__call__), [shape.input()],
                        warmup=warmup, repeats=repeats)
    for shape in bn_shapes:
        model = blocks.keras_conv_bn_relu(shape)
        rows += compare("3 XLA Keras conv+BN+relu", shape.label,
                        _xla_pair(shape.label, lambda t: model(t, training=False)), [shape.input()],
                        warmup=warmup, repeats=repeats)
    chain = blocks.ElementwiseChain()
    for dims in chain_shapes:
        x = tf.random.stateless_normal(dims, seed=[0, 1])
        rows += compare("3 XLA 10 elementwise ops", "x".join(map(str, dims)), _xla_pair("chain", chain.__call__),
                        [x], warmup=warmup, repeats=repeats)
    for loaded in user_models:
        x = tf.cast(tf.random.stateless_normal((user_batch, *loaded.input_shape), seed=[0, 5]), loaded.input_dtype)
        rows += compare("3 XLA forward", f"{loaded.name} b{user_batch}", _xla_pair(loaded.name, loaded.call), [x],
                        warmup=warmup, repeats=repeats, show_graph=False)
    if not models:
        return rows
    rng = np.random.default_rng(0)
    xv = tf.constant(rng.standard_normal((vgg_batch, vgg_size, vgg_size, 3), dtype=np.float32))
    yv = tf.constant(rng.integers(0, vgg19.NUM_CLASSES, vgg_batch), tf.int32)
    vgg_label = f"VGG19 {vgg_size}x{vgg_size} b{vgg_batch}"
    vnet = vgg19.VGG19Module(input_size=vgg_size)
    rows += compare("3 XLA forward", vgg_label, _xla_pair("vgg", vnet.__call__), [xv], warmup=warmup,
                    repeats=repeats, show_graph=False)
    rows += _train_pair("3 XLA training step", vgg_label, lambda: vgg19.VGG19Module(input_size=vgg_size),
                        xv, yv, warmup, repeats)
    xl = tf.constant(rng.standard_normal((lenet_batch, *lenet5.INPUT_SHAPE), dtype=np.float32))
    yl = tf.constant(rng.integers(0, lenet5.NUM_CLASSES, lenet_batch), tf.int32)
    lenet_label = f"LeNet-5 b{lenet_batch}"
    lnet = lenet5.LeNet5Module()
    rows += compare("3 XLA forward", lenet_label, _xla_pair("lenet", lnet.__call__), [xl], warmup=warmup,
                    repeats=repeats, show_graph=False)
    rows += _train_pair("3 XLA training step", lenet_label, lenet5.LeNet5Module, xl, yl, warmup, repeats)
    return rows


def exp4_dense_bias_relu(shapes: Sequence[DenseShape], warmup: int, repeats: int) -> list[timing.Timing]:
    """Remapper on vs off for MatMul + BiasAdd + Relu."""
    import tensorflow as tf

    from tfbench.models import blocks

    rows = []
    for shape in shapes:
        net, x = blocks.DenseBiasRelu(shape), shape.input()
        rows += compare("4 matmul+bias+relu", shape.label, [
            Variant("unfused (remapper off)", tf.function(net.__call__), UNFUSED),
            Variant("fused _FusedMatMul", tf.function(net.__call__), {})], [x], warmup=warmup, repeats=repeats)
    return rows


_HLO_OP_RE = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+ = .*?\s([a-z][\w\-]*)\(")


def hlo_entry_ops(hlo_text: str) -> collections.Counter:
    """Opcode counts of the ENTRY computation of an HLO module's text (what runs as separate kernels)."""
    counts: collections.Counter = collections.Counter()
    in_entry = False
    for line in hlo_text.splitlines():
        if line.startswith("ENTRY"):
            in_entry = True
        elif in_entry and line.startswith("}"):
            break
        elif in_entry and (m := _HLO_OP_RE.match(line)):
            counts[m.group(1)] += 1
    return counts


def write_hlo(out_dir: Path, dims: tuple[int, ...] = (1, 8, 8, 64)) -> dict[str, Any]:
    """Write the elementwise chain's HLO before and after XLA's optimisation; return op counts of both."""
    import tensorflow as tf

    from tfbench.models import blocks

    fn = tf.function(blocks.ElementwiseChain().__call__, jit_compile=True)
    ir = fn.experimental_get_compiler_ir(tf.zeros(dims))
    result: dict[str, Any] = {}
    for stage, file_name in (("hlo", "chain-hlo-before.txt"), ("optimized_hlo", "chain-hlo-after.txt")):
        text = ir(stage=stage)
        with atomic_output(out_dir / file_name) as tmp:
            tmp.write_text(text)
        counts = hlo_entry_ops(text)
        result[stage] = {"file": str(out_dir / file_name), "entry_ops": dict(counts),
                         "kernels": sum(n for op, n in counts.items() if op not in HLO_BOOKKEEPING)}
    return result


def summary_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as one compact table: experiment, shape, variant, median, speedup, max abs diff, graph."""
    columns = ("experiment", "shape", "variant", "median_ms", "speedup", "max_abs_diff", "agree", "graph")
    return timing.format_table([{c: r.get(c) for c in columns} for r in rows])


def write_tensorboard(run: Path, rows: Sequence[dict[str, Any]]) -> None:
    """All in one run, ``results``: a Text card per experiment, and every variant's numbers as scalar tags.

    One run, not one per variant: ``--quick`` alone has two dozen variants, and TensorBoard selects no
    run once a log folder holds more than about 40 (docs/tensorboard.md).
    """
    from tfbench.reporting.summaries import markdown_table, write_text, write_variant_scalars

    columns = ("shape", "variant", "median_ms", "speedup", "max_abs_diff", "agree", "graph")

    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    texts = {}
    for experiment in dict.fromkeys(r["experiment"] for r in rows):
        mine = [r for r in rows if r["experiment"] == experiment]
        texts[f"fusion/{experiment}"] = (
            f"{experiment}: median ms of interleaved timed calls (machine possibly shared: compare ratios); "
            "speedup = the first variant's median / this one's\n\n"
            + markdown_table(columns, [[cell(r.get(c)) for c in columns] for r in mine]))
    write_text(run / "results", texts)
    write_variant_scalars(run / "results", rows, ("experiment", "shape", "variant"),
                          {"median_ms": "median (ms)", "speedup": "speedup over the first variant",
                           "max_abs_diff": "max |difference| from the first variant"})
