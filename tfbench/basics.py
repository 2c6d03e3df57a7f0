"""Exercises 4.1 and 4.2 in TensorFlow 2: "Hello, TensorFlow!" and A + B, with the graph in TensorBoard.

    python -m tfbench.basics                  # prints the greeting and A + B, writes LOGDIR/basics/<timestamp>/
    python -m tfbench.basics --b 1 2 3        # B from the command line (any length: the signature says [None])

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


def make_parser() -> argparse.ArgumentParser:
    """The ``python -m tfbench.basics`` options."""
    p = cli.parser("basics", __doc__.split("\n\n")[0])
    p.add_argument("--b", type=float, nargs="+", default=[10.0, 20.0, 30.0],
                   help=f"values of B, as many as A has ({len(A_VALUES)}) or one (broadcast)")
    cli.add_logdir(p)
    cli.add_verbose(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Print the greeting and A + B; write the traced A + B graph to LOGDIR/basics/<timestamp>/."""
    ns = cli.parse(make_parser(), argv)
    if len(ns.b) not in (1, len(A_VALUES)):
        raise UserError(f"--b takes 1 or {len(A_VALUES)} values (A is {list(A_VALUES)}), got {len(ns.b)}")
    logdir = Path(ns.logdir)

    import tensorflow as tf

    from tfbench.reporting import summaries

    print(hello())
    add = make_add()
    run = paths.run_dir(logdir, "basics")
    total = summaries.write_trace(run, add, tf.constant(ns.b, tf.float32), name="A_plus_B")
    print(f"A = {list(A_VALUES)}, B = {ns.b}: A + B = {total.numpy().tolist()}")
    graph = add.get_concrete_function().graph
    print(f"the graph of add: {len(graph.get_operations())} ops, input {graph.inputs[0].name} "
          f"{graph.inputs[0].dtype.name} {graph.inputs[0].shape}")
    print(f"graph written to {run}  ({cli.tensorboard_command(run)}, Graphs tab)")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
