"""Synchronous data-parallel training with ``tf.distribute``: strategies, data, the loop, checkpoints.

Course exercise 5.3; the library under ``python -m tfbench.distributed train`` (the command and
its flags are :mod:`tfbench.distributed`, the local workers' launcher :mod:`tfbench.parallel.launcher`).
:func:`train_worker` is one process's part of ``train``: the strategy, the data, the loop, and,
on the chief, ``history.json``.

What runs in parallel: each replica runs the *same* training step (``tfbench.training.loops.make_train_step``,
forward + backward) on its own slice of the global batch.  What must be serial: the gradients
of all replicas are summed (an all-reduce, inside Keras' ``apply_gradients`` under a strategy)
before any replica may update its weights, so every step ends with a barrier.  The loss of
each replica is its examples' summed loss divided by the *global* batch
(``tf.nn.compute_average_loss``), so the summed gradients equal the single-device gradient of
the mean loss, and 1 and N replicas train the same model (``tests/test_distributed.py``
checks the loss curves agree to ``rtol=1e-4`` over the first 10 steps).

Strategies: ``one`` = ``OneDeviceStrategy("/cpu:0")``; ``mirrored`` = ``MirroredStrategy`` over
all GPUs, or, on a CPU-only machine, over the CPU split into ``replicas`` logical devices
(``tf.config.set_logical_device_configuration``), so the all-reduce really happens, between
two devices of one process; ``multiworker`` = ``MultiWorkerMirroredStrategy`` (ring collectives
over gRPC) with one replica per worker process.  Checkpoints: ``tf.train.CheckpointManager``,
written by the chief (worker 0; the others write to a scratch folder they delete, as
TensorFlow requires every worker to take part in a save).
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tfbench.parallel import cluster
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError
from tfbench.plumbing.files import write_json

STRATEGIES = ("one", "mirrored", "multiworker")
MODELS = ("lenet5", "vgg19")  # from tfbench.models.registry
CONFIG_FILE = "distributed_config.json"
HISTORY_FILE = "history.json"


# ----------------------------------------------------------------------------- strategies


def split_cpu(replicas: int) -> None:
    """Split the physical CPU into ``replicas`` logical devices; must run before TensorFlow touches a device."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError as err:  # the runtime was already initialised in this process
        if len(tf.config.list_logical_devices("CPU")) != replicas:
            raise RuntimeError(f"cannot split the CPU into {replicas} devices after TensorFlow started: {err}") from err


def make_strategy(kind: str, replicas: int = 2):
    """The ``tf.distribute`` strategy for ``kind`` (multiworker reads TF_CONFIG from the environment)."""
    import tensorflow as tf

    if kind == "one":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if kind == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        split_cpu(replicas)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:replicas]
        return tf.distribute.MirroredStrategy(devices)
    if kind == "multiworker":
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise UserError(f"--strategy must be one of {STRATEGIES}, got {kind!r}")


def describe(strategy) -> str:
    """One line: strategy class, replicas, devices, and how gradients are all-reduced."""
    extended = strategy.extended
    reduce = getattr(extended, "_cross_device_ops", None) or getattr(extended, "_collective_ops", None)
    how = type(reduce).__name__ if reduce is not None else "none (one replica)"
    return (f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s) on "
            f"{', '.join(extended.worker_devices)}; all-reduce: {how}")


# ----------------------------------------------------------------------------- data and model


@dataclass
class Data:
    """What to train on: arrays in memory (sliced per worker) or streamed TFRecord shards."""

    source: str
    x_train: Any = None
    y_train: Any = None
    x_test: Any = None
    y_test: Any = None
    records: Any = None  # distributed_data.ShardedRecords

    @property
    def num_train(self) -> int:
        """Training examples."""
        return self.records.num_examples if self.records is not None else len(self.x_train)


def load_data(model: str, data: str | None, classes: str, logdir: str | Path) -> Data:
    """LeNet-5: digits (embedded, MNIST) or ten classes of TFRecords, in memory; VGG19: TFRecords, streamed."""
    from tfbench.data import imagenet_val, mnist
    from tfbench.data.manifest import MANIFEST
    from tfbench.parallel import data as distributed_data

    is_records = data is not None and (Path(data) / MANIFEST).is_file()
    if model == "vgg19":
        if data is not None and not is_records:
            raise UserError(f"--data {data}: VGG19 trains on ImageNet TFRecord shards (a folder with "
                            f"{MANIFEST}, from `python -m tfbench.imagenet convert`)")
        folder = Path(data) if data is not None else imagenet_val.default_tfrecords(logdir)
        records = distributed_data.open_records(folder)
        return Data(f"ImageNet TFRecords {folder}: {records.num_examples} images in {len(records.files)} shards",
                    records=records)
    if is_records:
        digits = imagenet_val.load_classes(data, imagenet_val.parse_classes(classes), 32)
    else:
        digits = mnist.load(data)
    return Data(digits.source, mnist.pad_to_32(digits.x_train) if digits.x_train.shape[1] == 28 else digits.x_train,
                digits.y_train, mnist.pad_to_32(digits.x_test) if digits.x_test.shape[1] == 28 else digits.x_test,
                digits.y_test)


def build_model(model: str, seed: int, image_size: int):
    """LeNet-5 (Keras, tanh) or VGG19 (Keras, 1000 classes at ``image_size``), seeded."""
    from tfbench import models

    models.registry.check_name(model, MODELS)
    if model == "lenet5":
        return models.get("lenet5", seed=seed)
    return models.get(model, seed=seed, input_size=image_size)


# ----------------------------------------------------------------------------- the loop


@dataclass
class RunResult:
    """What one worker did: per step global step, loss and ms; where it started; timings and checks."""

    strategy: str
    replicas: int
    workers: int
    worker: int
    global_batch: int
    start_step: int = 0
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    checkpoints: list[int] = field(default_factory=list)
    allreduce_ms: float = float("nan")
    test_accuracy: float = float("nan")
    weights_abs_sum: float = float("nan")
    examples_per_step: int = 0
    profile: dict[str, Any] = field(default_factory=dict)  # step split read from the profiler trace

    @property
    def median_step_ms(self) -> float:
        """Median ms of a step after the first two (tracing and warm-up)."""
        times = self.step_ms[2:] or self.step_ms
        return statistics.median(times) if times else float("nan")

    def to_json(self) -> dict[str, Any]:
        """The history written to ``history.json``."""
        from dataclasses import asdict

        data = asdict(self)
        data["median_step_ms"] = self.median_step_ms
        data["final_step"] = self.start_step + len(self.steps)
        ms = self.median_step_ms
        data["examples_per_s"] = self.global_batch / ms * 1e3 if ms == ms and ms > 0 else float("nan")
        return data


class DistributedCheckpoints:
    """``CheckpointManager`` where only the chief's copy is kept (TensorFlow's multi-worker recipe).

    Every worker must call :meth:`save` (a save reads mirrored variables on all of them); non-chief
    workers write into ``<dir>/.worker-<i>`` and delete it right after.
    """

    def __init__(self, directory: Path, checkpoint, step_counter, *, is_chief: bool, worker: int):
        import tensorflow as tf

        self.directory, self.is_chief = Path(directory), is_chief
        self.write_dir = self.directory if is_chief else self.directory / f".worker-{worker}"
        self.checkpoint, self.step_counter = checkpoint, step_counter
        self.manager = tf.train.CheckpointManager(checkpoint, str(self.write_dir), max_to_keep=3,
                                                  step_counter=step_counter)

    def restore(self) -> str | None:
        """Restore the chief's latest checkpoint (every worker reads the same files); return its path."""
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(str(self.directory))
        if latest is not None:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return latest

    def save(self) -> int:
        """Save at the current step; returns the step."""
        step = int(self.step_counter.numpy())
        self.manager.save(checkpoint_number=step)
        if not self.is_chief:
            shutil.rmtree(self.write_dir, ignore_errors=True)
        return step


def _check_config(directory: Path, config: dict[str, Any], is_chief: bool) -> None:
    """Refuse to resume from a checkpoint folder written by a run with other settings."""
    import tensorflow as tf

    path = directory / CONFIG_FILE
    if tf.train.latest_checkpoint(str(directory)) and path.is_file():
        saved = json.loads(path.read_text())
        diffs = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
        if diffs:
            detail = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diffs.items())
            raise UserError(f"{directory}: checkpoint was written by a different run ({detail}); "
                            "use the same settings or another --checkpoint-dir")
    if is_chief:
        write_json(path, config)


def measure_allreduce(strategy, variables, *, warmup: int = 3, repeats: int = 20) -> float:
    """Median ms of one all-reduce (SUM) of tensors shaped like ``variables``, across all replicas, alone.

    Every worker must call this the same number of times (it is a collective).
    """
    import tensorflow as tf

    shapes = [v.shape for v in variables]

    def replica_fn():
        reduced = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, [tf.ones(s) for s in shapes])
        return tf.add_n([tf.reduce_sum(r) for r in reduced])  # depends on every reduced tensor

    @tf.function
    def allreduce():
        return strategy.experimental_local_results(strategy.run(replica_fn))[0]

    for _ in range(warmup):
        allreduce().numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        allreduce().numpy()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _profile_split(run_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Read the trace just written: per-step all-reduce ms (collective ops) vs the rest; log the medians."""
    from tfbench.parallel import profile as distributed_profile

    trace = distributed_profile.latest_trace(run_dir)
    if trace is None:
        return {}
    split = distributed_profile.step_split(trace)
    if split["steps"]:
        log(f"profiler trace of {split['steps']} steps ({trace.parent}): median step {split['median_step_ms']:.2f} ms, "
            f"all-reduce inside it {split['median_allreduce_ms']:.2f} ms (collective ops, waiting included), "
            f"the rest {split['median_other_ms']:.2f} ms")
    return split


def train_distributed(strategy, data: Data, *, strategy_name: str, model_name: str = "lenet5",
                      global_batch: int = 64, epochs: int = 1, max_steps: int | None = None, seed: int = 0,
                      momentum: float = 0.9, image_size: int = 224, task: cluster.TaskConfig | None = None,
                      run_dir: Path | None = None, checkpoint_dir: Path | None = None, checkpoint_every: int = 0,
                      profile_steps: int = 0, allreduce_repeats: int = 20, progress: bool = True,
                      log: Callable[[str], None] = print) -> RunResult:
    """Train ``model_name`` under ``strategy`` with the single-device step, distributed; resume from checkpoints.

    ``task`` says which worker this is (None: the only one).  The chief writes TensorBoard logs
    and the profiler trace (``profile_steps`` steps from step 3) to ``run_dir``.
    """
    import keras
    import tensorflow as tf
    from tqdm.auto import tqdm

    from tfbench.parallel import data as distributed_data
    from tfbench.training import loops as train

    worker = task.index if task else 0
    num_workers = task.num_workers if task else 1
    is_chief = task.is_chief if task else True
    replicas = strategy.num_replicas_in_sync
    if global_batch < 1 or global_batch % replicas:
        raise UserError(f"--global-batch {global_batch} must be a positive multiple of the {replicas} replicas")
    if data.records is not None:
        steps_per_epoch = data.records.steps_per_epoch(num_workers, global_batch // num_workers)
    else:
        steps_per_epoch = train.steps_per_epoch(data.num_train, global_batch)
    if steps_per_epoch < 1:
        raise UserError(f"global batch {global_batch} is larger than what each of the {num_workers} worker(s) "
                        f"can read from {data.num_train} examples")
    total = epochs * steps_per_epoch if max_steps is None else min(epochs * steps_per_epoch, max_steps)

    with strategy.scope():
        model = build_model(model_name, seed, image_size)
        optimizer = train.make_optimizer(momentum)
        optimizer.build(model.trainable_variables)
    per_example = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def loss_fn(labels, logits):  # sum over this replica's examples / global batch
        return tf.nn.compute_average_loss(per_example(labels, logits), global_batch_size=global_batch)

    step_fn = train.make_train_step(model, optimizer, loss_fn)

    @tf.function
    def distributed_step(batch):
        loss, correct, _ = strategy.run(step_fn, args=batch)
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None))

    result = RunResult(strategy_name, replicas, num_workers, worker, global_batch,
                       examples_per_step=global_batch)
    ckpts = None
    if checkpoint_dir is not None:
        config = {"model": model_name, "global_batch": global_batch, "seed": seed, "image_size": image_size,
                  "data": data.source, "train_examples": data.num_train}
        _check_config(Path(checkpoint_dir), config, is_chief)
        ckpts = DistributedCheckpoints(Path(checkpoint_dir), tf.train.Checkpoint(model=model, optimizer=optimizer),
                                       optimizer.iterations, is_chief=is_chief, worker=worker)
        latest = ckpts.restore()
        if latest:
            step = int(optimizer.iterations.numpy())
            log(f"resumed from {latest} at step {step} (epoch {step // steps_per_epoch + 1}, "
                f"batch {step % steps_per_epoch + 1} of {steps_per_epoch})")
    result.start_step = step = int(optimizer.iterations.numpy())

    writer = tf.summary.create_file_writer(str(run_dir / "train")) if (run_dir and is_chief) else None
    profiling = False
    bar = tqdm(total=total, initial=step, unit="step", disable=not (progress and is_chief),
               desc=f"{strategy_name} x{replicas}")
    for epoch in range(step // steps_per_epoch, epochs):
        skip = step - epoch * steps_per_epoch
        if step >= total:
            break
        if data.records is not None:
            fn = distributed_data.tfrecord_input_fn(data.records, global_batch=global_batch, size=image_size,
                                                    seed=seed, epoch=epoch, skip_steps=skip)
        else:
            fn = distributed_data.array_input_fn(data.x_train, data.y_train, global_batch=global_batch, seed=seed,
                                                 epoch=epoch, skip_steps=skip)
        for batch in strategy.distribute_datasets_from_function(fn):
            if step >= total:
                break
            if is_chief and run_dir and profile_steps and step - result.start_step == 2:
                tf.profiler.experimental.start(str(run_dir))
                profiling = True
            start = time.perf_counter()
            loss, correct = distributed_step(batch)
            loss = float(loss)  # waits for the step (and its all-reduce)
            ms = (time.perf_counter() - start) * 1e3
            step += 1
            if profiling and step - result.start_step >= 2 + profile_steps:
                tf.profiler.experimental.stop()
                profiling = False
                result.profile = _profile_split(run_dir, log)
            result.steps.append(step)
            result.losses.append(loss)
            result.step_ms.append(ms)
            if writer is not None:
                with writer.as_default(step=step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("step_ms", ms)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if ckpts is not None and checkpoint_every and step % checkpoint_every == 0:
                result.checkpoints.append(ckpts.save())
                log(f"checkpoint step {step}")
    bar.close()
    if profiling:
        tf.profiler.experimental.stop()
        result.profile = _profile_split(run_dir, log)
    if ckpts is not None and (not result.checkpoints or result.checkpoints[-1] != step) and step > result.start_step:
        result.checkpoints.append(ckpts.save())
        log(f"checkpoint step {step}")
    if allreduce_repeats > 0:
        result.allreduce_ms = measure_allreduce(strategy, model.trainable_variables, repeats=allreduce_repeats)
    if data.x_test is not None and is_chief:
        result.test_accuracy = train.evaluate(model, data.x_test, data.y_test)
    result.weights_abs_sum = float(sum(tf.reduce_sum(tf.abs(tf.cast(v, tf.float64))).numpy()
                                       for v in model.trainable_variables))
    if writer is not None:
        writer.close()
    return result


# ----------------------------------------------------------------------------- one process of ``train``


def run_folders(logdir: str | Path, run_dir: str | Path | None, checkpoint_dir: str | Path | None, *,
                is_chief: bool = True) -> tuple[Path | None, Path]:
    """Where a run writes: ``run_dir``, else a fresh ``<logdir>/distributed/<time>`` for the chief (None for
    another worker); ``checkpoint_dir``, else ``<run>/checkpoints``."""
    run = Path(run_dir) if run_dir else (paths.run_dir(logdir, "distributed") if is_chief else None)
    if checkpoint_dir:
        return run, Path(checkpoint_dir)
    if run is not None:
        return run, run / "checkpoints"
    # a non-chief worker of a user's cluster without --checkpoint-dir: it only needs scratch space
    return None, Path(logdir) / "distributed" / "checkpoints"


def _silent(msg: str) -> None:
    """The log of a worker other than the chief."""


@dataclass
class WorkerRun:
    """What :func:`train_worker` did in this process; ``run_dir`` and ``history`` only on the chief."""

    result: RunResult
    checkpoint_dir: Path
    run_dir: Path | None = None
    history: dict[str, Any] | None = None

    @property
    def history_file(self) -> Path | None:
        """``<run>/history.json`` (written by the chief)."""
        return self.run_dir / HISTORY_FILE if self.run_dir is not None else None

    def summary(self) -> list[str]:
        """The chief's closing lines: steps, last loss, step time, all-reduce, test accuracy, history file."""
        result, history = self.result, self.history or self.result.to_json()
        last = result.losses[-1] if result.losses else float("nan")
        lines = [f"steps {result.start_step}..{history['final_step']}: last loss {last:.4f}; median "
                 f"{result.median_step_ms:.2f} ms/step = {history['examples_per_s']:.3g} examples/s; all-reduce of "
                 f"gradient-sized tensors alone: {result.allreduce_ms:.2f} ms"]
        if result.test_accuracy == result.test_accuracy:
            lines.append(f"test accuracy: {result.test_accuracy:.4f}")
        return lines + [f"history: {self.history_file}"]


def train_worker(strategy_name: str, *, replicas: int = 2, task: cluster.TaskConfig | None = None,
                 model: str = "lenet5", data: str | None = None, classes: str = "0-9",
                 logdir: str | Path = paths.DEFAULT_LOGDIR, run_dir: str | Path | None = None,
                 checkpoint_dir: str | Path | None = None, image_size: int = 224, global_batch: int = 64,
                 epochs: int = 1, max_steps: int | None = None, seed: int = 0, momentum: float = 0.9,
                 checkpoint_every: int = 50, profile_steps: int = 5, allreduce_repeats: int = 20,
                 progress: bool = True, log: Callable[[str], None] = print) -> WorkerRun:
    """Train as this process's part of ``train``: one device, mirrored, or worker ``task`` of a cluster.

    The strategy is made first, before any other TensorFlow call (it may split the CPU).  Only the
    chief calls ``log``; it writes ``history.json`` (the loop's history, the model, the data, the
    strategy, the checkpoint folder) in its run folder.
    """
    strategy = make_strategy(strategy_name, replicas)
    is_chief = task.is_chief if task else True
    log = log if is_chief else _silent
    run, checkpoints = run_folders(logdir, run_dir, checkpoint_dir, is_chief=is_chief)
    loaded = load_data(model, data, classes, logdir)
    log(f"run: {run}  ({cli.tensorboard_command(run)})")
    log(f"data: {loaded.source}")
    log(describe(strategy))
    if task is not None:
        log(f"worker {task.index} of {task.num_workers} (chief); cluster {list(task.workers)}")
    result = train_distributed(strategy, loaded, strategy_name=strategy_name, model_name=model,
                               global_batch=global_batch, epochs=epochs, max_steps=max_steps, seed=seed,
                               momentum=momentum, image_size=image_size, task=task, run_dir=run,
                               checkpoint_dir=checkpoints, checkpoint_every=checkpoint_every,
                               profile_steps=profile_steps, allreduce_repeats=allreduce_repeats,
                               progress=progress, log=log)
    if not is_chief:
        return WorkerRun(result, checkpoints)
    history = result.to_json()
    history.update({"model": model, "data": loaded.source, "strategy_description": describe(strategy),
                    "checkpoint_dir": str(checkpoints)})
    write_json(run / HISTORY_FILE, history)
    return WorkerRun(result, checkpoints, run, history)
