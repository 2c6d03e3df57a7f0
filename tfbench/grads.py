"""Gradients registered from Python: every mechanism TensorFlow has, each checked numerically.

Course exercise 5.5 asks how TensorFlow registers the gradients of ``Sin`` and ``MaxPool``.
Answer: in Python.  ``tensorflow/python/ops/math_grad.py`` has ``@ops.RegisterGradient("Sin")``
on a three-line function returning ``grad * cos(x)``; ``nn_grad.py`` registers ``MaxPool``'s
(which calls the C++ ``MaxPoolGrad`` op).  Backpropagation looks the op *type* up in that
registry.  This module shows the three ways to plug in your own gradient:

1. ``tf.custom_gradient``: a function returns its value and its backward function.  Works with
   ``GradientTape`` eagerly and inside ``tf.function``.  Examples: phi(v) = v / sqrt(1 + v^2)
   (exercise 2.7), a numerically stable softplus, a straight-through estimator for
   quantisation, and gradient clipping by norm inside the backward pass.
2. ``tf.RegisterGradient("PowerDifference")`` for a new op type (:mod:`tfbench.ops`).
3. ``tf.RegisterGradient("TfbenchGuidedRelu")`` under a new name plus
   ``Graph.gradient_override_map({"Relu": "TfbenchGuidedRelu"})`` inside a ``tf.function``:
   ops created in the block get a ``_gradient_op_type`` attribute.  **Only ``tf.gradients``
   reads it; ``tf.GradientTape`` ignores the override map** (eagerly and inside
   ``tf.function``, checked in TF 2.21 by ``tests/test_grads.py``): the tape looks gradients
   up by op type alone.  Use ``tf.custom_gradient`` when you use a tape.

Run:
  python -m tfbench.grads which Sin MaxPool Relu PowerDifference   # function, file:line, docstring
  python -m tfbench.grads which Sin --source                       # ... and its source code
  python -m tfbench.grads check                                    # numeric check of every mechanism
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from tfbench.plumbing import cli
from tfbench.plumbing.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    """``which OP...`` and ``check``; defined before TensorFlow is imported so ``--help`` needs none of it."""
    parser = cli.parser("grads", __doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("which", help="the registered gradient function of each op type, its file:line and docstring",
                       formatter_class=cli.HelpFormatter)
    p.add_argument("op_types", nargs="+", metavar="OP",
                   help="op types as in tf.raw_ops: Sin MaxPool Relu PowerDifference")
    p.add_argument("--source", action="store_true", help="also print each function's source")
    cli.add_verbose(p)
    p = sub.add_parser("check", help="check every gradient mechanism against a reference",
                       formatter_class=cli.HelpFormatter)
    cli.add_seed(p, help="seed of the random test inputs")
    cli.add_verbose(p)
    return parser


if __name__ == "__main__":  # python -m tfbench.grads: answer --help and bad flags before TensorFlow loads below
    cli.quiet_tensorflow(build_parser().parse_args().verbose)


def main(argv: Sequence[str] | None = None) -> int:
    """``which OP...`` prints where gradients live; ``check`` verifies every mechanism numerically."""
    ns = build_parser().parse_args(argv)
    cli.quiet_tensorflow(ns.verbose)
    from tfbench.operators.gradients import check_all, format_info, which  # TensorFlow loads here, after parsing

    if ns.command == "which":
        infos = [which(op) for op in ns.op_types]  # all looked up before printing: a typo fails cleanly
        print("\n\n".join(format_info(info, ns.source) for info in infos))
        return 0
    checks = check_all(ns.seed)
    width = max(len(c.mechanism) for c in checks)
    for c in checks:
        print(f"{c.mechanism:{width}s}  max error {c.max_error:.2e}  vs {c.reference}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
