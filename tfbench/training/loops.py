"""One training step, three ways: an eager ``GradientTape`` loop, the same step as a ``tf.function``, and ``model.fit``.

Exercises 5.1/5.2 (eager vs static graph) and 4.8 (learning rate 0.1, times 0.9 every
10,000 steps), reusable by every experiment that trains (LeNet-5, the MLP, mixed precision,
sparsity).  The step is written once, by hand, because that is the lesson::

    with tf.GradientTape() as tape:            # forward, recorded
        loss = loss_fn(labels, model(images))
    grads = tape.gradient(loss, variables)     # backward
    optimizer.apply_gradients(zip(grads, variables))   # update, lr from the schedule

``mode="eager"`` runs it op by op from Python; ``mode="function"`` wraps the *same* Python
function in ``tf.function`` (traced once into a graph, grappler-optimised, run by the C++
runtime); ``mode="fit"`` hands the model, optimizer and loss to Keras' ``model.fit``, which
builds its own compiled step.  All three read the same batches in the same order (a NumPy
permutation seeded by ``(seed, epoch)``; whole batches only), start from the same weights
and use the same optimizer (``keras.optimizers.SGD`` with :func:`lr_schedule`), so their
loss curves agree: within ``rtol=1e-4`` over the first 20 steps (``tests/test_train.py``;
grappler's fused kernels round differently from eager's op-by-op ones, that is all).
``fit`` is called once per epoch, so it too can resume mid-epoch from a checkpoint.

Logged for TensorBoard under ``run_dir`` (tags grouped ``train/``, ``lr/``, ``weights/``): loss and
learning rate every step; epoch loss, a histogram of every weight and ``accuracy`` every epoch,
in run ``train`` for the training batches and in run ``test`` for the held-out images, so both
share one chart; the whole learning-rate staircase in run ``lr_schedule``; 16 training images;
in ``function`` mode also the graph of the traced training step.  Checkpoints: ``tf.train.Checkpoint(model,
optimizer)`` + ``CheckpointManager``; the step counter is the optimizer's ``iterations``,
so a restored run knows where it was, which batch of which epoch comes next, and keeps
its momentum and learning-rate position.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from tfbench.plumbing.errors import UserError
from tfbench.plumbing.files import write_json

MODES = ("eager", "function", "fit")
LR_INITIAL = 0.1
LR_DECAY_STEPS = 10_000
LR_DECAY_RATE = 0.9
CONFIG_FILE = "train_config.json"


def lr_schedule() -> keras.optimizers.schedules.LearningRateSchedule:
    """Exercise 4.8: 0.1, multiplied by 0.9 every 10,000 steps (staircase: in jumps, not smoothly)."""
    return keras.optimizers.schedules.ExponentialDecay(
        LR_INITIAL, decay_steps=LR_DECAY_STEPS, decay_rate=LR_DECAY_RATE, staircase=True)


def make_optimizer(momentum: float = 0.0, learning_rate: Any = None) -> keras.optimizers.Optimizer:
    """SGD driven by :func:`lr_schedule` (or ``learning_rate``); ``momentum > 0`` adds per-weight state."""
    return keras.optimizers.SGD(lr_schedule() if learning_rate is None else learning_rate, momentum=momentum)


def loss_function() -> keras.losses.Loss:
    """Cross-entropy on logits, averaged over the batch (what ``fit`` computes too)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def forward(model: Any, images: tf.Tensor, training: bool) -> tf.Tensor:
    """Logits from a Keras model or a ``tf.Module`` (which has no ``training`` argument)."""
    return model(images, training=training) if isinstance(model, keras.Model) else model(images)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Whole batches per epoch (the remainder is dropped, a different remainder every epoch)."""
    return num_examples // batch_size


def epoch_order(num_examples: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """The example indices of one epoch, in order, whole batches only: same for every mode."""
    perm = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return perm[: steps_per_epoch(num_examples, batch_size) * batch_size]


def epoch_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, epoch: int,
                  skip_batches: int = 0) -> tf.data.Dataset:
    """One epoch's batches as a ``tf.data`` pipeline, starting after ``skip_batches`` (for resuming)."""
    order = epoch_order(len(x), batch_size, seed, epoch)[skip_batches * batch_size:]
    ds = tf.data.Dataset.from_tensor_slices((x[order], y[order]))
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def make_train_step(model: Any, optimizer: keras.optimizers.Optimizer,
                    loss_fn: Callable | None = None) -> Callable[[tf.Tensor, tf.Tensor], tuple]:
    """The training step as a plain Python function: ``step(images, labels) -> (loss, correct, lr)``.

    Call it directly for eager execution or wrap it in ``tf.function`` for a graph; ``lr`` is
    the learning rate this step used (read from the schedule before the update).
    """
    loss_fn = loss_fn or loss_function()

    def train_step(images, labels):
        lr = optimizer.learning_rate  # schedule(optimizer.iterations)
        with tf.GradientTape() as tape:
            logits = forward(model, images, training=True)
            loss = loss_fn(labels, logits)
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), tf.cast(labels, tf.int64)), tf.int32))
        return loss, correct, lr

    return train_step


def make_predict(model: Any) -> Callable[[Any], tf.Tensor]:
    """A ``tf.function`` returning predicted classes (inference mode); make it once per model."""
    return tf.function(lambda images: tf.argmax(forward(model, images, training=False), -1),
                       reduce_retracing=True)


def evaluate(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 500,
             predict: Callable | None = None) -> float:
    """Accuracy of ``model`` on ``(x, y)``, in inference mode."""
    if len(x) == 0:
        return float("nan")
    predict = predict or make_predict(model)
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += int(np.sum(predict(x[start:start + batch_size]).numpy() == y[start:start + batch_size]))
    return correct / len(x)


@dataclass
class History:
    """What a run did: one entry per step (global step, loss, lr, ms) and one dict per epoch."""

    mode: str
    start_step: int = 0
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)

    @property
    def median_ms_per_step(self) -> float:
        """Median wall time of one step (after the first, which traces/compiles)."""
        times = self.step_ms[1:] or self.step_ms
        return statistics.median(times) if times else float("nan")

    @property
    def test_accuracy(self) -> float:
        """Held-out accuracy after the last epoch."""
        return self.epochs[-1]["test_accuracy"] if self.epochs else float("nan")


class _Checkpoints:
    """``tf.train.Checkpoint`` + ``CheckpointManager`` around model and optimizer, plus the run's data config."""

    def __init__(self, directory: Path, model: Any, optimizer: keras.optimizers.Optimizer,
                 config: dict[str, Any], max_to_keep: int = 3):
        self.directory = Path(directory)
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=max_to_keep,
                                                  step_counter=optimizer.iterations)
        self.optimizer = optimizer
        config_path = self.directory / CONFIG_FILE
        if self.manager.latest_checkpoint and config_path.is_file():
            saved = json.loads(config_path.read_text())
            diffs = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
            if diffs:
                detail = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diffs.items())
                raise UserError(f"{self.directory}: checkpoint was written by a different run ({detail}); "
                                "use the same settings or another checkpoint folder")
        write_json(config_path, config)

    def restore(self) -> None:
        """Restore model weights, optimizer slots and step counter from the latest checkpoint, if any."""
        latest = self.manager.latest_checkpoint
        if latest is not None:
            self.checkpoint.restore(latest).assert_existing_objects_matched()

    def save(self) -> str:
        """Save at the current step (named ``ckpt-<step>``); returns the path prefix."""
        return self.manager.save(checkpoint_number=int(self.optimizer.iterations.numpy()))


def train(model: Any, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
          mode: str = "function", epochs: int = 1, batch_size: int = 64, seed: int = 0,
          optimizer: keras.optimizers.Optimizer | None = None, momentum: float = 0.0,
          run_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None,
          checkpoint_every: int = 0, max_steps: int | None = None, progress: bool = True,
          log: Callable[[str], None] | None = None) -> History:
    """Train ``model`` for ``epochs`` in ``mode`` (eager | function | fit); resume from ``checkpoint_dir``.

    ``run_dir`` gets the TensorBoard logs (None: no logs); ``checkpoint_every`` saves every N
    steps as well as at each epoch end (0: epoch ends only); ``max_steps`` stops early (for
    tests and benchmarks).  ``fit`` needs a Keras model.
    """
    from tqdm.auto import tqdm

    if mode not in MODES:
        raise UserError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "fit" and not isinstance(model, keras.Model):
        raise UserError(f"mode 'fit' needs a Keras model, got {type(model).__name__}")
    if batch_size < 1 or epochs < 0:
        raise UserError(f"need batch size >= 1 and epochs >= 0, got {batch_size} and {epochs}")
    spe = steps_per_epoch(len(x_train), batch_size)
    if spe == 0:
        raise UserError(f"batch size {batch_size} is larger than the {len(x_train)} training examples")
    log = log or (lambda msg: tqdm.write(msg))
    optimizer = optimizer or make_optimizer(momentum)
    if not optimizer.built:  # create the slots now, so a checkpoint can restore into them
        optimizer.build(model.trainable_variables)
    history = History(mode=mode)

    ckpts = None
    if checkpoint_dir is not None:
        config = {"batch_size": batch_size, "seed": seed, "train_examples": int(len(x_train)),
                  "input_shape": list(x_train.shape[1:])}
        ckpts = _Checkpoints(Path(checkpoint_dir), model, optimizer, config)
        ckpts.restore()
    history.start_step = int(optimizer.iterations.numpy())  # restored, or an optimizer that has run before
    if ckpts is not None and ckpts.manager.latest_checkpoint:
        where = (f"(epoch {history.start_step // spe + 1} of {epochs}, batch {history.start_step % spe + 1} of {spe})"
                 if history.start_step < epochs * spe else f"(all {epochs} epochs done: nothing left to train)")
        log(f"resumed from {ckpts.manager.latest_checkpoint} at step {history.start_step} {where}")

    writer = tf.summary.create_file_writer(str(Path(run_dir) / "train")) if run_dir is not None else None
    test_writer = tf.summary.create_file_writer(str(Path(run_dir) / "test")) if run_dir is not None else None
    if run_dir is not None and history.start_step == 0:
        write_overview(Path(run_dir), x_train, y_train, max(epochs * spe, 1))
    predict = make_predict(model)
    step_fn: Callable | None = None
    if mode in ("eager", "function"):
        step_fn = make_train_step(model, optimizer)
        if mode == "function":
            step_fn = tf.function(step_fn)
            if writer is not None:  # trace (without running) and write the step's graph
                spec = (tf.TensorSpec((batch_size, *x_train.shape[1:]), tf.float32),
                        tf.TensorSpec((batch_size,), tf.as_dtype(y_train.dtype)))
                with writer.as_default():
                    tf.summary.graph(step_fn.get_concrete_function(*spec).graph)
    else:
        model.compile(optimizer=optimizer, loss=loss_function(), metrics=["accuracy"], jit_compile=False)

    def record(step: int, loss: float, lr: float, ms: float) -> None:
        history.steps.append(step)
        history.losses.append(loss)
        history.lrs.append(lr)
        history.step_ms.append(ms)
        if writer is not None:
            with writer.as_default(step=step):
                tf.summary.scalar("train/loss", loss, description=SCALARS["train/loss"])
                tf.summary.scalar("lr/learning_rate", lr, description=SCALARS["lr/learning_rate"])
        if ckpts is not None and checkpoint_every and step % checkpoint_every == 0:
            history.checkpoints.append(ckpts.save())
            log(f"checkpoint step {step}")

    total_steps = epochs * spe if max_steps is None else min(epochs * spe, max_steps)
    step = history.start_step
    for epoch in range(step // spe, epochs):
        skip = step - epoch * spe
        n_steps = min(spe - skip, total_steps - step)
        if n_steps <= 0:
            break
        dataset = epoch_dataset(x_train, y_train, batch_size, seed, epoch, skip).take(n_steps)
        bar = tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{epochs} [{mode}]", unit="step",
                   disable=not progress, leave=False)
        losses, correct, start_time = [], 0, time.perf_counter()
        if step_fn is not None:
            for images, labels in dataset:
                t0 = time.perf_counter()
                loss, n_correct, lr = step_fn(images, labels)
                loss, lr = float(loss), float(lr)  # waits for the step to finish
                step += 1
                record(step, loss, lr, (time.perf_counter() - t0) * 1e3)
                losses.append(loss)
                correct += int(n_correct)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
            train_accuracy = correct / (len(losses) * batch_size)
        else:
            callback = _FitRecorder(optimizer, record, bar)
            model.fit(dataset, epochs=1, verbose=0, callbacks=[callback], shuffle=False)
            losses, train_accuracy = callback.losses, callback.accuracy
            step = int(optimizer.iterations.numpy())
        bar.close()
        epoch_log = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)),
                     "train_accuracy": float(train_accuracy),
                     "test_accuracy": evaluate(model, x_test, y_test, predict=predict),
                     "lr": history.lrs[-1], "seconds": time.perf_counter() - start_time}
        history.epochs.append(epoch_log)
        if writer is not None:
            with writer.as_default(step=step):
                tf.summary.scalar("train/epoch_loss", epoch_log["loss"], description=SCALARS["train/epoch_loss"])
                tf.summary.scalar("accuracy", epoch_log["train_accuracy"], description=SCALARS["accuracy"])
                for var in model.trainable_variables:
                    tf.summary.histogram("weights/" + _variable_name(var), var)
            with test_writer.as_default(step=step):  # same tag, other run: one chart, two lines
                tf.summary.scalar("accuracy", epoch_log["test_accuracy"], description=SCALARS["accuracy"])
            writer.flush()
            test_writer.flush()
        if ckpts is not None and (not history.checkpoints or not history.checkpoints[-1].endswith(f"-{step}")):
            history.checkpoints.append(ckpts.save())
        partial = "" if len(losses) == spe else f" ({len(losses)} of {spe} steps)"
        log(f"epoch {epoch + 1}/{epochs}{partial}: loss {epoch_log['loss']:.4f}  "
            f"train acc {train_accuracy:.4f}  test acc {epoch_log['test_accuracy']:.4f}  "
            f"lr {epoch_log['lr']:.4g}  {statistics.median(history.step_ms[-len(losses):]):.2f} ms/step")
        if step >= total_steps:
            break
    if writer is not None:
        writer.close()
        test_writer.close()
    return history


#: Scalar tag -> description (units included) shown under each chart in TensorBoard.
SCALARS = {
    "train/loss": "Cross-entropy of one training batch (nats, mean over the batch), every step.",
    "train/epoch_loss": "Mean of the step losses of one epoch (nats).",
    "accuracy": "Fraction of images classified correctly (0..1), each epoch. Run `train`: the batches of that "
                "epoch, as they were trained on; run `test`: the held-out test images after the epoch.",
    "lr/learning_rate": "Learning rate the step used: 0.1 x 0.9 every 10,000 steps, staircase (exercise 4.8).",
    "lr/schedule": "The whole learning-rate schedule over 100,000 steps (run `lr_schedule`): the staircase that a "
                   "short run, which stays below step 10,000, never reaches.",
}


def write_overview(run_dir: Path, x_train: np.ndarray, y_train: np.ndarray, total_steps: int,
                   schedule_steps: int = 100_000) -> None:
    """Once per run: the full learning-rate staircase (run ``lr_schedule``) and 16 training images."""
    schedule = lr_schedule()
    with tf.summary.create_file_writer(str(run_dir / "lr_schedule")).as_default():
        for step in range(0, max(schedule_steps, total_steps) + 1, 500):
            tf.summary.scalar("lr/schedule", float(schedule(step)), step=step, description=SCALARS["lr/schedule"])
    images = np.asarray(x_train[:16], np.float32)
    if images.ndim == 3:
        images = images[..., None]
    low, high = float(images.min()), float(images.max())
    shown = (images - low) / max(high - low, 1e-6)
    with tf.summary.create_file_writer(str(run_dir / "train")).as_default():
        tf.summary.image("data/first_16_training_images", shown, step=0, max_outputs=16, description=(
            f"The first 16 training images as the model reads them: {images.shape[1]}x{images.shape[2]}, "
            f"{images.shape[3]} channel(s), values {low:.3g}..{high:.3g} (shown rescaled to 0..1); "
            f"labels {', '.join(str(int(v)) for v in y_train[:16])}. Total steps of this run: {total_steps:,}."))


def _variable_name(var: Any) -> str:
    """A stable histogram tag: Keras variables have a ``path`` (``c1/kernel``), tf.Variables a name."""
    name = getattr(var, "path", None) or var.name
    return name.split(":")[0]


class _FitRecorder(keras.callbacks.Callback):
    """Per-step loss, lr and time from ``fit``, which logs the running *mean* loss of the epoch.

    The step's own loss is recovered from consecutive means: ``l_k = k*m_k - (k-1)*m_(k-1)``
    (exact because every batch has the same size, so the mean is unweighted).
    """

    def __init__(self, optimizer: keras.optimizers.Optimizer, record: Callable, bar: Any):
        super().__init__()
        self.optimizer_ref, self.record, self.bar = optimizer, record, bar
        self.losses: list[float] = []
        self.accuracy = float("nan")
        self._mean, self._t0, self._step, self._lr = 0.0, 0.0, 0, 0.0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()
        self._step = int(self.optimizer_ref.iterations.numpy())
        self._lr = float(self.optimizer_ref.learning_rate)  # schedule(iterations): what this step uses

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        mean = float(logs["loss"])  # waits for the step
        ms = (time.perf_counter() - self._t0) * 1e3
        k = len(self.losses) + 1
        loss = k * mean - (k - 1) * self._mean
        self._mean = mean
        self.losses.append(loss)
        self.accuracy = float(logs.get("accuracy", float("nan")))
        self.record(self._step + 1, loss, self._lr, ms)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}")
