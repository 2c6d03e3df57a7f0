"""Counting a network: neurons, trainable parameters, multiplications and additions (exercises 3.1, 3.2).

``python -m tfbench.complexity MODEL [--image-size 224] [--json]`` builds MODEL (``tfbench.models.zoo``:
alexnet, alexnet_grouped, vgg19, resnet18, resnet50, resnet152, inception_v1, inception_v1_bn, lenet5, mlp),
or opens it (a ``.keras``/``.h5`` file, a SavedModel or ``module:factory``: :mod:`tfbench.models.load`),
with Keras and prints a per-layer table like torchinfo's, computed from the built layers'
shapes, never from a hand-typed table.  Then it traces the model's ``tf.function`` and asks
TensorFlow's own profiler (``tf.compat.v1.profiler``) for the float-operation count of that
graph, as an independent check.  The graph is not frozen: the profiler needs only static
shapes, which the variables' reads have, and freezing VGG19 copied its 575 MB of weights
into the graph several times (8.3 GB peak instead of 3.1 GB, the same counts).

Conventions (the course's, stated so the numbers can be argued with):

- **neurons** are the output elements of convolution and fully connected layers: each
  computes one weighted sum (plus bias) and its activation.  The input is not counted, and
  neither are activation layers (they belong to the neuron before them).  Pooling outputs
  are counted separately (``pool neurons``): they compute a max or a mean, not a weighted sum.
- **trainable parameters**: kernel and bias elements, BatchNorm's gamma and beta; BatchNorm's
  moving mean and variance are state, not trainable (as in torchvision's counts).
- **multiplications and additions** are counted separately.  An output of a conv or fc
  layer with ``K`` inputs (``K = kh*kw*cin/groups`` or ``in_features``) takes ``K``
  multiplications and ``K-1`` additions to accumulate them, plus 1 addition for the bias if
  the layer has one: with a bias, additions = multiplications.  ``MACs`` (multiply-accumulates,
  what papers call "FLOPs" or "multiply-adds") counts the conv and fc multiplications only;
  that is what the published numbers are.  Inference BatchNorm is folded to one multiply and
  one add per element; average pooling adds ``window-1`` and multiplies once per output;
  a residual ``Add`` adds once per element; ReLU, max pooling (comparisons), padding, concat,
  flatten, dropout and softmax cost no multiplications or additions here.
- **TensorFlow's profiler** counts 2 FLOPs per multiply-add for ``Conv2D`` and ``MatMul``
  (so it should report exactly ``2 x MACs`` for them, which the tests check), one per element
  for ``BiasAdd``/``AddV2``/``Mul``, ``window`` per output for pooling, and nothing for ReLU.
"""

from __future__ import annotations

import json
import sys
from typing import Sequence

from tfbench.inspection.complexity import analyse, analyse_file, format_table
from tfbench.plumbing import cli
from tfbench.plumbing.errors import UserError, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: count one model and print the table (or JSON)."""
    from tfbench.models import registry

    parser = cli.parser("complexity", __doc__.split("\n")[0])
    parser.add_argument("model", help=cli.MODEL_HELP + "; names: " + ", ".join(registry.NAMES))
    parser.add_argument("--image-size", type=cli.positive_int, default=None,
                        help="square input size (default: the model's own, 224 for the ImageNet models)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--no-profile", action="store_true", help="skip the TensorFlow profiler cross-check")
    parser.add_argument("--logdir", default=None,
                        help="also write the table as a TensorBoard Text card under LOGDIR/complexity/<timestamp>/")
    cli.add_model_source(parser)
    cli.add_verbose(parser)
    ns = cli.parse(parser, argv)
    if ns.model in registry.NAMES:
        if ns.image_size is not None:  # the model's own rule, from the registry (VGG19: a multiple of 32, ...)
            problem = registry.input_size_error(ns.model, ns.image_size)
            if problem:
                raise UserError(problem)
        result = analyse(ns.model, ns.image_size, profile=not ns.no_profile)
    else:
        if ns.image_size is not None:
            raise UserError(f"--image-size applies to the zoo's models; {ns.model} takes --input-shape "
                            "(only when it leaves a dimension free)")
        result = analyse_file(ns.model, input_shape=ns.input_shape, allow_code=ns.allow_code,
                              profile=not ns.no_profile)
        ns.model = result.model
    table = format_table(result)
    print(json.dumps(result.to_json(), indent=2) if ns.json else table)
    if ns.logdir:
        from tfbench.plumbing import paths
        from tfbench.reporting.summaries import write_text

        run = paths.run_dir(ns.logdir, "complexity") / ns.model
        card = f"`python -m tfbench.complexity {ns.model}`\n\n```\n{table}\n```"
        write_text(run, {f"complexity/{ns.model}": card})
        print(f"TensorBoard Text card: {run}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
