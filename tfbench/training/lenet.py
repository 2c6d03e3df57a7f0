"""LeNet-5 and the MLP on MNIST digits (exercises 3.10, 4.8, 4.11): the model, its inputs, the digits to
train on, and one training step timed three ways (eager ``GradientTape``, ``tf.function``, ``model.fit``).
The training loop itself is :mod:`tfbench.training.loops`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from tfbench import models, timing
from tfbench.data import imagenet_val, mnist
from tfbench.plumbing.errors import UserError

MODELS = ("lenet5", "mlp")


#: default passes over the 4,000 embedded training digits: where each model's held-out accuracy has levelled off
DEFAULT_EPOCHS = {"lenet5": 10, "mlp": 20}


IMPLS = models.registry.IMPLS


def build_model(model: str = "lenet5", *, impl: str = "keras", seed: int = 0, activation: str | None = None,
                hidden: Sequence[int] | None = None) -> Any:
    """LeNet-5 or the MLP, as a Keras model or a ``tf.Module``, with seeded weights (``models.get``)."""
    from tfbench import models

    models.registry.check_name(model, MODELS)
    return models.get(model, impl=impl, seed=seed, activation=activation, hidden=hidden)


def model_inputs(model: str, x: np.ndarray) -> np.ndarray:
    """What each model reads: LeNet-5 32x32 (28x28 digits padded by 2), the MLP 28x28."""
    return mnist.pad_to_32(x) if model == "lenet5" and x.shape[1] == mnist.IMAGE_SIZE else x


def load_data(data: Sequence[str] | None, model: str, classes: str) -> mnist.DigitData:
    """``--data``: nothing (default), PATH (MNIST), or ``imagenet-tfrecord DIR``."""
    if not data:
        return mnist.load()
    if data[0] == "imagenet-tfrecord":
        if len(data) != 2:
            raise UserError("--data imagenet-tfrecord needs exactly one folder: --data imagenet-tfrecord DIR")
        size = 32 if model == "lenet5" else mnist.IMAGE_SIZE
        return imagenet_val.load_classes(data[1], imagenet_val.parse_classes(classes), size)
    if len(data) != 1:
        raise UserError(f"--data takes PATH or 'imagenet-tfrecord DIR', got {' '.join(data)!r}")
    return mnist.load(data[0])


def count_trainable(model: Any) -> int:
    """Number of trainable parameters of a Keras model or tf.Module."""
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


# ---------------------------------------------------------------- timing the step three ways
def step_timings(build: Callable[[], Any], images: np.ndarray, labels: np.ndarray, *,
                 modes: Sequence[str] = ("eager", "function", "fit"), warmup: int = 3, repeats: int = 20,
                 fit_steps: int = 10) -> list[timing.Timing]:
    """Median ms/step of one training step, each mode on its own fresh model and optimizer, interleaved.

    ``eager`` and ``function`` time one call of :func:`tfbench.training.loops.make_train_step` on one
    batch; ``fit`` times ``model.fit`` over ``fit_steps`` batches and divides by ``fit_steps``
    (fit's per-call set-up is part of what fit costs, spread over its steps).  The cases run
    round-robin (:func:`tfbench.timing.compare`), so load from other processes hits all alike.
    """
    import tensorflow as tf

    from tfbench.training import loops as train

    x, y = tf.constant(images), tf.constant(labels)
    cases: dict[str, Callable[[], Any]] = {}
    for mode in modes:
        model = build()
        optimizer = train.make_optimizer()
        optimizer.build(model.trainable_variables)
        if mode in ("eager", "function"):
            step = train.make_train_step(model, optimizer)
            step = tf.function(step) if mode == "function" else step
            cases[mode] = lambda step=step: step(x, y)[0]
        elif mode == "fit":
            model.compile(optimizer=optimizer, loss=train.loss_function(), jit_compile=False)
            ds = tf.data.Dataset.from_tensors((x, y)).repeat(fit_steps)
            cases[mode] = lambda model=model, ds=ds: model.fit(ds, epochs=1, verbose=0,
                                                               shuffle=False).history["loss"][-1]
        else:
            raise UserError(f"unknown mode {mode!r}, expected one of {train.MODES}")
    rows = timing.compare(cases, warmup=warmup, repeats=repeats, batch_size=int(x.shape[0]))
    for result in rows:
        steps = fit_steps if result.case == "fit" else 1
        for key in ("median_ms", "p10_ms", "p90_ms"):
            setattr(result, key, getattr(result, key) / steps)
        result.extra["steps_per_call"] = steps
    return rows
