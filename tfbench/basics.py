"""The basics: chapter 2's exercises and 3.11, and exercises 4.1 and 4.2 ("Hello, TensorFlow!" and A + B).

    python -m tfbench.basics                  # 4.1, 4.2: the greeting and A + B, writes LOGDIR/basics/<timestamp>/
    python -m tfbench.basics --b 1 2 3        # B from the command line (any length: the signature says [None])
    python -m tfbench.basics perceptron       # 1.3: one neuron on AND, OR, NAND, XOR; an MLP on XOR
    python -m tfbench.basics params           # 2.2: the parameters of a 33-512-10 MLP, two counters
    python -m tfbench.basics activations      # 2.4, 2.6, 2.7: five activations, ranges, derivatives vs the tape
    python -m tfbench.basics new-activation   # 2.10: an activation with a hand-written gradient, checked, trained
    python -m tfbench.basics adder            # 2.11, 2.12: a 4-bit adder in TensorFlow and in NumPy by hand
    python -m tfbench.basics momentum         # 2.9: momentum in [0, 1] and in [-1, 0]
    python -m tfbench.basics optimizers       # 3.11 (3.12 with --imagenet DIR): SGD vs momentum, Nesterov, Adam

The chapter 2 exercises live in :mod:`tfbench.backprop`, one module each; every one prints its answer
and writes it as a TensorBoard Text card (and a picture where one helps) to
LOGDIR/basics/<exercise>/<timestamp>/.  ``hello`` (4.1, 4.2) is what runs without an exercise name.

In TensorFlow 1 both needed a graph and a session, and B came in through a placeholder::

    import tensorflow as tf                          # TF 1.x
    hello = tf.constant("Hello, TensorFlow!")
    a = tf.constant([1.0, 2.0, 3.0])
    b = tf.placeholder(tf.float32, shape=[None])     # fed at run time
    total = a + b
    with tf.Session() as sess:
        print(sess.run(hello))
        print(sess.run(total, feed_dict={b: [10.0, 20.0, 30.0]}))
    tf.summary.FileWriter("logs", sess.graph)

TensorFlow 2 runs ops eagerly, so the greeting is just a constant's value.  The placeholder's
role (an input of a known dtype and shape whose value comes later) is taken by the argument of
a ``tf.function`` with an ``input_signature``: it is traced once into a graph whose input is a
``float32 [None]`` tensor, and every call feeds it, like ``feed_dict`` did.  That graph is what
goes to TensorBoard (``tf.summary.trace_export``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli

A_VALUES = (1.0, 2.0, 3.0)


def hello() -> str:
    """Exercise 4.1: the value of a string constant, decoded."""
    import tensorflow as tf

    return tf.constant("Hello, TensorFlow!").numpy().decode("utf-8")


def make_add(a_values: Sequence[float] = A_VALUES) -> Callable:
    """Exercise 4.2: ``add(b)`` = A + B, A a constant, B the input of a ``tf.function`` (float32, shape [None])."""
    import tensorflow as tf

    values = [float(v) for v in a_values]

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.float32, name="B")])
    def add(b):
        a = tf.constant(values, tf.float32, name="A")  # created while tracing: a Const node of the graph
        return tf.add(a, b, name="A_plus_B")

    return add


#: exercise -> (course exercises, what it shows); "hello" runs when no exercise is named
EXERCISES = {
    "hello": ("4.1, 4.2", "Hello, TensorFlow! and A + B through a tf.function input signature, graph to TensorBoard"),
    "perceptron": ("1.3", "one neuron on AND, OR, NAND, XOR with its decision line; a 2-layer MLP learns XOR"),
    "params": ("2.2", "the trainable parameters of an MLP (33-512-10): tfbench's counter, Keras, by hand"),
    "activations": ("2.4, 2.6, 2.7", "five activations on one plot, their ranges; derivatives against the tape"),
    "new-activation": ("2.10", "algebraic swish: its gradient written by hand, registered, checked, trained"),
    "adder": ("2.11, 2.12", "a 4-bit adder: an MLP in TensorFlow and the same in NumPy with a hand-written backward"),
    "momentum": ("2.9", "momentum in [0, 1] and in [-1, 0] on one problem: curves and the effect in words"),
    "optimizers": ("3.11, 3.12", "plain SGD vs momentum, Nesterov, Adam, a schedule: epochs and seconds to a target"),
}


def make_parser() -> argparse.ArgumentParser:
    """The ``python -m tfbench.basics [exercise]`` options."""
    p = cli.parser("basics", __doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="exercise", metavar="exercise",
                           help="the exercise to run (default: hello); basics <exercise> --help for its options")
    parsers = {}
    for name, (numbers, text) in EXERCISES.items():
        parsers[name] = sub.add_parser(name, help=f"{text} ({numbers})", description=f"exercise {numbers}: {text}",
                                       formatter_class=cli.HelpFormatter)
        cli.add_logdir(parsers[name])
        cli.add_verbose(parsers[name])
    parsers["hello"].add_argument("--b", type=float, nargs="+", default=[10.0, 20.0, 30.0],
                                  help=f"values of B, as many as A has ({len(A_VALUES)}) or one (broadcast)")
    parsers["params"].add_argument("--widths", type=cli.positive_int, nargs="+", default=[33, 512, 10],
                                   help="layer widths, the input's first")
    parsers["new-activation"].add_argument("--epochs", type=cli.positive_int, default=3,
                                           help="epochs of the MLP trained with each activation")
    parsers["adder"].add_argument("--steps", type=cli.positive_int, default=4000, help="full-batch Adam steps")
    parsers["momentum"].add_argument("--steps", type=cli.positive_int, default=500, help="gradient-descent steps")
    o = parsers["optimizers"]
    o.add_argument("--target", type=cli.positive_float, default=0.9, help="held-out accuracy to reach on MNIST")
    o.add_argument("--max-epochs", type=cli.positive_int, default=30, help="give up on a method after this many")
    o.add_argument("--mnist", metavar="PATH",
                   help="MNIST IDX folder or mnist.npz (default: what python -m tfbench.mnist finds)")
    o.add_argument("--train-limit", type=cli.positive_int, help="train on the first N digits only")
    o.add_argument("--imagenet", metavar="DIR", help="exercise 3.12: converted ImageNet val TFRecords "
                   "(python -m tfbench.imagenet convert)")
    o.add_argument("--imagenet-classes", default="0-9", help="with --imagenet: the 10 classes (0-based) to learn")
    o.add_argument("--imagenet-target", type=cli.positive_float, default=0.3,
                   help="with --imagenet: held-out accuracy to reach")
    cli.add_seed(o)
    return p


def with_exercise(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``hello`` put in front when it names no exercise (``basics --b 1 2 3`` is ``basics hello ...``)."""
    args = list(argv)
    if not args or (args[0] not in EXERCISES and args[0] not in ("-h", "--help")):
        return ["hello", *args]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one exercise (``hello`` by default), print its answer, write its run under LOGDIR/basics/."""
    ns = cli.parse(make_parser(), with_exercise(sys.argv[1:] if argv is None else argv))
    logdir = Path(ns.logdir)
    if ns.exercise == "hello":
        return hello_main(ns.b, logdir)
    if ns.exercise == "params" and len(ns.widths) < 2:
        raise UserError(f"--widths takes the input width and at least one layer width, got {ns.widths}")
    if ns.exercise == "optimizers":
        for flag, value in (("--target", ns.target), ("--imagenet-target", ns.imagenet_target)):
            if value > 1:
                raise UserError(f"{flag} {value}: an accuracy is a fraction in (0, 1], e.g. 0.9")
        if ns.imagenet is not None and not Path(ns.imagenet).is_dir():
            raise UserError(f"--imagenet {ns.imagenet}: no such folder; convert the ImageNet validation images "
                            "with python -m tfbench.imagenet convert and give the folder of its TFRecord shards")
    run = paths.run_dir(logdir, f"basics/{ns.exercise}")
    if ns.exercise == "perceptron":
        from tfbench.backprop import perceptron

        answer = perceptron.run(run)
    elif ns.exercise == "params":
        from tfbench.backprop import perceptron

        answer = perceptron.run_parameters(run, tuple(ns.widths))
    elif ns.exercise == "activations":
        from tfbench.backprop import activations

        answer = activations.run(run)
    elif ns.exercise == "new-activation":
        from tfbench.backprop import new_activation

        answer = new_activation.run(run, epochs=ns.epochs)
    elif ns.exercise == "adder":
        from tfbench.backprop import adder

        answer = adder.run(run, steps=ns.steps)
    elif ns.exercise == "momentum":
        from tfbench.backprop import momentum

        answer = momentum.run(run, steps=ns.steps)
    else:
        from tfbench.backprop import optimizers

        answer = optimizers.run(run, target=ns.target, max_epochs=ns.max_epochs, mnist_path=ns.mnist,
                                imagenet_dir=ns.imagenet, imagenet_classes=ns.imagenet_classes,
                                imagenet_target=ns.imagenet_target, train_limit=ns.train_limit, seed=ns.seed)
    print(answer)
    print(f"\nwritten to {run}  ({cli.tensorboard_command(run)})")
    return 0


def hello_main(b: Sequence[float], logdir: Path) -> int:
    """Exercises 4.1, 4.2: print the greeting and A + B; write the traced A + B graph to LOGDIR/basics/<timestamp>/."""
    if len(b) not in (1, len(A_VALUES)):
        raise UserError(f"--b takes 1 or {len(A_VALUES)} values (A is {list(A_VALUES)}), got {len(b)}")

    import tensorflow as tf

    from tfbench.reporting import summaries

    print(hello())
    add = make_add()
    run = paths.run_dir(logdir, "basics")
    total = summaries.write_trace(run, add, tf.constant(b, tf.float32), name="A_plus_B")
    print(f"A = {list(A_VALUES)}, B = {list(b)}: A + B = {total.numpy().tolist()}")
    graph = add.get_concrete_function().graph
    print(f"the graph of add: {len(graph.get_operations())} ops, input {graph.inputs[0].name} "
          f"{graph.inputs[0].dtype.name} {graph.inputs[0].shape}")
    print(f"graph written to {run}  ({cli.tensorboard_command(run)}, Graphs tab)")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
