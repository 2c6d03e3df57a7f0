"""``tfbench.inspect_model(model_or_path)``: every instrument of the workbench on one model, as one report.

The stages, each a library module of this package: counts (:mod:`tfbench.models.counting`, the
profiler's cross-check), memory (:mod:`.memory`), eager / ``tf.function`` / XLA / bfloat16
(:mod:`.modes`), grappler (:mod:`.rewrites`), roofline (:mod:`.roofline`).  ``quick=True`` stops
after the counts and the memory estimate (seconds).  With ``logdir`` the report is also written:
a TensorBoard run ``<logdir>/inspect/<model>/<time>/`` (Text cards, the roofline image, and the
``graph``, ``optimized`` and ``partition`` runs of grappler's graphs) and the JSON
``<logdir>/bench/inspect-<time>.json``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from tfbench.inspection.report import InspectReport


@contextlib.contextmanager
def _stage(name: str, progress: bool) -> Iterator[None]:
    """Say what runs; when it took over a second, say how long."""
    start = time.perf_counter()
    if progress:
        print(f"inspect: {name} ...", file=sys.stderr, flush=True)
    yield
    took = time.perf_counter() - start
    if progress and took > 1.0:
        print(f"inspect: {name} done in {took:.1f} s", file=sys.stderr, flush=True)


def inspect_model(model_or_path: Any, *, input_shape: Sequence[int] | None = None, batch: int = 1,
                  quick: bool = False, allow_code: bool = False, repeats: int = 5, ablate: bool = True,
                  logdir: str | Path | None = None, progress: bool = False, seed: int = 0,
                  name: str | None = None) -> InspectReport:
    """Inspect a Keras model, a registry name, a ``.keras``/``.h5`` file, a SavedModel folder or a factory.

    ``input_shape`` (no batch dimension) is needed only when the model leaves a dimension free;
    ``batch`` is the batch of the memory measurement, the timings and the roofline; ``quick``
    gives counts and the memory estimate only.  Bad inputs raise :class:`tfbench.plumbing.errors.UserError`.
    """
    from tfbench.inspection import tf_log
    from tfbench.plumbing.errors import UserError

    if batch < 1 or repeats < 1:
        raise UserError(f"batch and repeats must be at least 1, got batch={batch}, repeats={repeats}")
    log = None
    try:
        with tf_log.capture() as log:
            report = _inspect(model_or_path, input_shape=input_shape, batch=batch, quick=quick,
                              allow_code=allow_code, repeats=repeats, ablate=ablate, progress=progress, seed=seed,
                              name=name)
    except UserError:
        raise  # one line for the user; TensorFlow's log of a refused input says nothing more
    except BaseException:
        if log is not None:  # a crash: what TensorFlow wrote may be the reason, so it is not swallowed
            sys.stderr.write(log.text)
        raise
    report.tf_log = tf_log.summarise(log.text)
    if report.tf_log.lines:
        report.notes.append(report.tf_log.line())
    return _write(report, logdir, progress)


def _inspect(model_or_path: Any, *, input_shape: Sequence[int] | None, batch: int, quick: bool, allow_code: bool,
             repeats: int, ablate: bool, progress: bool, seed: int, name: str | None) -> InspectReport:
    """Every stage of :func:`inspect_model` (TensorFlow's stderr captured by the caller)."""
    from tfbench.inspection import tf_log
    from tfbench.models import load as loader

    with _stage("loading the model", progress):
        if isinstance(model_or_path, (str, Path)):
            loaded = loader.load(str(model_or_path), input_shape=input_shape, allow_code=allow_code, seed=seed)
        else:
            loaded = loader.from_object(model_or_path, input_shape=input_shape, name=name)
    import tensorflow as tf

    from tfbench.models.counting import count_model, profiler_flops

    name = name or loaded.name
    trainable, frozen = loaded.variables()
    n_train = sum(int(v.shape.num_elements()) for v in trainable)
    n_frozen = sum(int(v.shape.num_elements()) for v in frozen)
    keras_model = loaded.keras_model
    report = InspectReport(name, loaded.source, loaded.input_shape, batch, None, n_train + n_frozen, n_train,
                           n_frozen)
    with _stage("counting", progress):
        if keras_model is not None:
            # the zoo's published numbers are looked up by the Keras model's own name (a saved zoo model keeps it)
            report.counts = count_model(keras_model, keras_model.name, input_shape=loaded.input_shape)
            report.counts.model = name
        if not quick:
            report.profiler = profiler_flops(loaded.call, loaded.input_shape, loaded.input_dtype)
    from tfbench.inspection import memory

    if report.counts is not None:
        outputs = sum(math.prod(map(int, c.output_shape)) for c in report.counts.layers)
    else:  # traced, not run: the memory measurement below must see the model's first eager call
        spec = tf.TensorSpec((1, *loaded.input_shape), loaded.input_dtype)
        traced = tf.function(loaded.call, autograph=False).get_concrete_function(spec)
        outputs = sum(math.prod(int(d) for d in t.shape[1:]) for t in tf.nest.flatten(traced.structured_outputs))
    report.memory = memory.estimate(loaded.input_shape, outputs, report.params, batch)
    if report.counts is None:
        report.memory.note = "forward/backward pass size counts only the model's output (no layers to sum)"
    if quick:
        report.notes.append("quick: counts and the memory estimate only")
        return report
    from tfbench import timing

    report.machine = timing.machine_info()
    x = tf.random.stateless_uniform((batch, *loaded.input_shape), seed=[seed, 17], dtype=tf.float32)
    x = tf.cast(x, loaded.input_dtype)
    with _stage(f"memory of one forward and one training step at batch {batch}", progress):
        memory.measure(report.memory, loaded.call, trainable, x)
    with _stage("eager / tf.function / XLA / bfloat16", progress):
        from tfbench.inspection.modes import run_modes

        with tf_log.capture() as log:
            report.modes = run_modes(loaded.call, x, keras_model=keras_model, repeats=repeats,
                                     cpu_flags=report.machine["cpu_flags"])
        failures = tf_log.summarise(log.text).failures
        if failures:
            report.modes.failures = sorted(failures)
    with _stage("grappler: graphs before/after" + (" and each pass off alone" if ablate else ""), progress):
        from tfbench.inspection.rewrites import grappler_report

        report.grappler = grappler_report(loaded.call, x, ablate=ablate)
    with _stage("roofline: peaks and " + ("every call timed alone" if keras_model is not None else "the model"),
                progress):
        from tfbench.inspection.roofline import model_roofline

        # counted multiplications + additions; a model without Keras layers: the profiler's FLOPs
        flops = batch * (report.mults + report.adds if report.counts is not None else report.profiler["total_flops"])
        moved = 4 * (batch * (math.prod(map(int, loaded.input_shape)) + outputs) + report.params)
        report.roofline = model_roofline(name, keras_model, loaded.call, x, flops, moved, repeats=max(1, repeats // 2),
                                         input_shape=loaded.input_shape)
    return report


def _write(report: InspectReport, logdir: str | Path | None, progress: bool) -> InspectReport:
    """The TensorBoard run and the JSON, when ``logdir`` is given."""
    if logdir is None:
        return report
    with _stage("writing TensorBoard run and JSON", progress):
        from tfbench.inspection import tensorboard

        tensorboard.write(report, Path(logdir))
    return report
