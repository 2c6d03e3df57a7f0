"""TensorBoard writing helpers: graphs before and after grappler, traces, images, scalars.

TensorBoard's graph plugin draws the graph a ``tf.summary.trace_export`` recorded, which is
the graph *before* grappler optimised it.  To see what actually runs, we ask the eager
runtime for the run metadata of one call: for each function it holds the graph before
optimisation, after grappler, and the per-device partition graphs.  :func:`write_graph`
then writes any of them as its own TensorBoard run, so they can be compared side by side.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context

from tfbench.reporting.tables import markdown_table  # noqa: F401  (summaries.markdown_table: where the commands find it)


@dataclass
class FunctionGraphs:
    """The three views of one executed ``tf.function`` (as ``GraphDef`` protos)."""

    pre_optimization: tf.compat.v1.GraphDef
    post_optimization: tf.compat.v1.GraphDef
    partitions: list[tf.compat.v1.GraphDef]
    arg_names: list[str] = field(default_factory=list)  # readable name of each ``_Arg`` index

    def readable(self, output_names: Sequence[str] = ("output",)) -> dict[str, tf.compat.v1.GraphDef]:
        """``pre``, ``post``, ``partition``(``_i``) graphs, renamed for TensorBoard (:mod:`.graph_views`)."""
        from tfbench.reporting import graph_views

        views = [("pre", self.pre_optimization), ("post", self.post_optimization)] + [
            ("partition" if i == 0 else f"partition_{i}", g) for i, g in enumerate(self.partitions)]
        return {label: graph_views.readable_function_graph(g, self.arg_names, output_names) for label, g in views}


def capture_function_graphs(fn: Callable[..., Any], *args: Any) -> FunctionGraphs:
    """Call the ``tf.function`` ``fn(*args)`` once and return its graphs before/after grappler.

    ``fn`` must not have run with these argument types before (the runtime reports the
    graphs when it instantiates the function), so pass a freshly made ``tf.function``.
    When ``fn`` calls other functions, the largest function graph is returned (the outer one).
    """
    ctx = context.context()
    ctx.enable_run_metadata()
    # Once run metadata has been enabled, the runtime keeps storing the graphs of every function
    # instantiated later, even after disable_run_metadata(); drain them so they are not taken for fn's.
    ctx.export_run_metadata()
    try:
        result = fn(*args)
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
        metadata = ctx.export_run_metadata()
    finally:
        ctx.disable_run_metadata()
    if metadata is None or not metadata.function_graphs:
        raise RuntimeError("no function graphs were recorded: pass a tf.function that has not run "
                           "with these input types yet")
    main = max(metadata.function_graphs, key=lambda g: len(g.pre_optimization_graph.node))
    from tfbench.reporting import graph_views

    arg_names = (graph_views.function_arg_names(fn.get_concrete_function(*args))
                 if hasattr(fn, "get_concrete_function") else [])
    return FunctionGraphs(main.pre_optimization_graph, main.post_optimization_graph, list(main.partition_graphs),
                          arg_names)


def op_counts(graph_def: tf.compat.v1.GraphDef) -> collections.Counter:
    """How many nodes of each op type the graph has (its function library not included)."""
    return collections.Counter(node.op for node in graph_def.node)


def write_graph(run_dir: str | Path, graph_def: tf.compat.v1.GraphDef) -> None:
    """Write ``graph_def`` as the graph of the TensorBoard run in ``run_dir``.

    The proto is written as it is (not imported into a ``tf.Graph``), so node names that only
    label a view, such as ``conv1_1/FusedConv2D+BiasAdd+Relu``, are kept.
    """
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        tf.summary.graph(graph_def)
    writer.close()


def write_trace(run_dir: str | Path, fn: Callable[..., Any], *args: Any, name: str = "trace") -> Any:
    """Trace one call of the ``tf.function`` ``fn`` into ``run_dir`` (TensorBoard's op graph view)."""
    writer = tf.summary.create_file_writer(str(run_dir))
    tf.summary.trace_on(graph=True, profiler=False)
    try:
        result = fn(*args)
    finally:
        with writer.as_default():
            tf.summary.trace_export(name=name, step=0)
        writer.close()
    return result


def write_keras_graph(run_dir: str | Path, model: Any) -> None:
    """Write a Keras model's conceptual graph (its layers), as Keras' TensorBoard callback does."""
    from keras.src.callbacks.tensorboard import keras_model_summary

    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        keras_model_summary("keras", model, step=0)
    writer.close()


def write_images(run_dir: str | Path, images: dict[str, np.ndarray | Sequence[np.ndarray]], step: int = 0) -> None:
    """Write uint8 or [0, 1] float images (HxWxC or NxHxWxC) as TensorBoard image summaries."""
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for tag, value in images.items():
            array = np.asarray(value)
            if array.ndim == 3:
                array = array[None]
            if array.dtype == np.uint8:
                array = array.astype(np.float32) / 255.0
            tf.summary.image(tag, np.clip(array, 0.0, 1.0), step=step, max_outputs=len(array))
    writer.close()


def write_scalars(run_dir: str | Path, scalars: dict[str, float], step: int) -> None:
    """Write a dict of scalars at one step."""
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=step)
    writer.close()


def write_text(run_dir: str | Path, texts: dict[str, str], step: int = 0) -> None:
    """Write markdown texts (tables, notes) as cards of TensorBoard's Text dashboard in ``run_dir``."""
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for tag, markdown in texts.items():
            tf.summary.text(tag, markdown, step=step)
    writer.close()


def write_hparams_runs(run_dir: str | Path, rows: Sequence[dict[str, Any]], hparams: Sequence[str],
                       metrics: dict[str, str]) -> list[Path]:
    """One HParams run per row under ``run_dir`` (``hparams`` columns as hyperparameters, ``metrics`` as scalars).

    ``metrics`` maps a row key to its display name.  TensorBoard's HParams dashboard then shows
    the rows as one sortable, filterable table.  Returns the run folders written.
    """
    from tensorboard.plugins.hparams import api as hp

    run_dir = Path(run_dir)
    domains = {}
    for key in hparams:
        values = [row[key] for row in rows]
        domains[key] = hp.HParam(key, hp.Discrete(sorted({str(v) for v in values})))
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        hp.hparams_config(hparams=list(domains.values()),
                          metrics=[hp.Metric(key, display_name=name) for key, name in metrics.items()])
    written = []
    for i, row in enumerate(rows):
        label = "_".join(str(row[k]) for k in hparams)
        path = run_dir / f"{i:02d}_{''.join(c if c.isalnum() or c in '._-' else '_' for c in label)[:80]}"
        with tf.summary.create_file_writer(str(path)).as_default():
            hp.hparams({domains[k]: str(row[k]) for k in hparams}, trial_id=label)
            for key in metrics:
                if row.get(key) is not None:
                    tf.summary.scalar(key, float(row[key]), step=0)
        written.append(path)
    return written


def write_variant_scalars(run_dir: str | Path, rows: Sequence[dict[str, Any]], keys: Sequence[str],
                          metrics: dict[str, str]) -> list[str]:
    """Many variants as tags of ONE run: ``<metric>/<key values joined by />``, with ``metrics``' display names.

    :func:`write_hparams_runs` makes a run per row, and TensorBoard selects no run at all once a log
    folder holds more than about 40: a command with more variants than a handful writes them here.
    Returns the tags written.
    """
    tags = []
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        for row in rows:
            label = "/".join("".join(c if c.isalnum() or c in "._-+x" else "_" for c in str(row[k])) for k in keys)
            for key, name in metrics.items():
                if row.get(key) is not None:
                    tf.summary.scalar(f"{key}/{label}", float(row[key]), step=0, description=name)
                    tags.append(f"{key}/{label}")
    return tags
