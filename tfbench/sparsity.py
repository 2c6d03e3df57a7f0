"""Sparse training by magnitude pruning: 0% -> 50% zeros during training (course exercises 5.12 and 5.9).

Mixed precision keeps a float32 master beside each 16-bit copy; pruning, "by analogy", keeps
a **mask** beside each weight: a 0/1 tensor of the kernel's shape.  Every step

1. the gradient is multiplied by the mask (pruned weights get no gradient),
2. the optimizer updates the weights,
3. the weights are multiplied by the mask again, because an optimizer with momentum (Adam
   here) keeps moving a weight whose gradient is zero: pruned weights stay exactly zero
   after every update.

Every ``frequency`` steps the masks are recomputed: in each conv and fc kernel, the
``s(t) * size`` weights of smallest magnitude are masked (biases are not pruned).  The
target sparsity ``s(t)`` follows the polynomial schedule of Zhu & Gupta (2017), the one
``tensorflow_model_optimization`` uses::

    s(t) = s_final + (s_initial - s_final) * (1 - (t - t_begin) / (t_end - t_begin)) ** 3

rising fast at first, while the network has many redundant weights, and slowly at the end;
after ``t_end`` the network trains on at the final sparsity to recover accuracy.

``python -m tfbench.sparsity`` trains LeNet-5 and the 784-512-256-10 MLP dense and sparse
(same seed, same loop, ``final_sparsity=0`` for dense) on the digits (MNIST if you have
it, else the 5,000 embedded MNIST digits) and reports per-layer sparsity and test accuracy
of both; then the same mechanism with nothing but NumPy: a 3-layer fully connected network
(exercise 5.12) with hand-written forward and backward passes and SGD with momentum.
Results go to ``logs/sparsity/<timestamp>/report.json`` and TensorBoard scalars beside it.

``--model MODEL`` (a ``.keras``/``.h5`` file, a registry name, or ``package.module:factory`` with
``--allow-code``) skips the training and prunes your model one shot, without labels: at each of
``--sparsities``, every conv and fc kernel loses its smallest weights, layer by layer, on a copy;
the outputs on one fixed batch are compared with the dense model's (relative L2 change, top-1
unchanged), with the weights' compressed size and the forward time of both
(:mod:`tfbench.training.one_shot`).

The zeros save nothing by themselves here: dense kernels still multiply them.  Speed needs
sparse storage and kernels (or 2:4 structured sparsity on GPUs that have it).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any, Sequence

from tfbench.data import mnist
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli
from tfbench.plumbing.files import write_json
from tfbench.training.sparsity import MODELS, SparseResult, format_comparisons, format_row, train_keras, train_numpy


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: dense vs pruned training of LeNet-5, the MLP and the NumPy network; with ``--model``, one-shot pruning."""
    parser = cli.parser("sparsity", __doc__.splitlines()[0])
    parser.add_argument("--data", help="MNIST IDX folder or mnist.npz (default: ~/.keras cache, else embedded MNIST)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--sparsity", type=float, default=0.5, help="final sparsity of every conv/fc kernel")
    parser.add_argument("--epochs", type=cli.positive_int, default=12,
                        help="epochs for the Keras models (NumPy: twice this)")
    parser.add_argument("--model", help=cli.MODEL_HELP + ": prune it one shot instead of training on MNIST")
    cli.add_model_source(parser)
    parser.add_argument("--sparsities", default="0.5,0.75,0.9", help="with --model: the sparsities compared with dense")
    cli.add_batch_size(parser, None, help="images per step (default: 64; with --model: 16, the batch compared)")
    cli.add_repeats(parser, 10, help="with --model: timed forward rounds (warm-ups not counted)")
    cli.add_seed(parser)
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    ns = cli.parse(parser, argv)
    if ns.model is not None:
        return prune_model(ns)
    ns.batch_size = ns.batch_size or 64
    models = [m.strip() for m in ns.models.split(",") if m.strip()]
    if not models or any(m not in MODELS for m in models):
        raise UserError(f"--models: got {ns.models!r}; choose from {', '.join(MODELS)}")
    if not 0.0 < ns.sparsity < 1.0:
        raise UserError(f"--sparsity must be between 0 and 1 (exclusive), got {ns.sparsity}")
    data = mnist.load(ns.data)
    print(data.summary())
    results: list[SparseResult] = []
    for name in models:
        for target in (0.0, ns.sparsity):
            if name == "numpy":
                results.append(train_numpy(data, final_sparsity=target, epochs=2 * ns.epochs,
                                           batch_size=ns.batch_size, seed=ns.seed))
            else:
                results.append(train_keras(name, data, final_sparsity=target, epochs=ns.epochs,
                                           batch_size=ns.batch_size, seed=ns.seed))
            print(format_row(results[-1]))
    for line in format_comparisons(results):
        print(line)
    run_dir = paths.run_dir(ns.logdir, "sparsity")
    from tfbench.reporting import summaries

    for r in results:
        for epoch, (loss, zeros) in enumerate(zip(r.loss_curve, r.sparsity_curve)):
            summaries.write_scalars(run_dir / f"{r.model}-{r.final_sparsity:.0%}".replace("%", "pct"),
                                    {"loss": loss, "sparsity": zeros}, epoch)
    report: dict[str, Any] = {"data": data.source, "results": [asdict(r) for r in results]}
    write_json(run_dir / "report.json", report)
    print(f"report: {run_dir / 'report.json'}")
    return 0


def prune_model(ns: argparse.Namespace) -> int:
    """``--model``: one-shot pruning of the user's model; table, per-kernel sparsity, JSON, TensorBoard."""
    from tfbench import timing
    from tfbench.models.load import parse_input_shape
    from tfbench.training import one_shot

    sparsities = one_shot.parse_sparsities(ns.sparsities)
    result = one_shot.prune_user_model(ns.model, sparsities, allow_code=ns.allow_code, batch_size=ns.batch_size or 16,
                                       input_shape=parse_input_shape(ns.input_shape) if ns.input_shape else None,
                                       seed=ns.seed, repeats=ns.repeats)
    machine = timing.machine_info()
    print(timing.machine_header(machine))
    print(f"{result.model}: {result.prunable_weights:,} of {result.total_weights:,} weights in prunable kernels; "
          f"batch: {result.batch}")
    print(timing.format_table(one_shot.table_rows(result)))
    print("achieved sparsity per kernel:")
    for line in one_shot.layer_lines(result):
        print(f"  {line}")
    run_dir = paths.run_dir(ns.logdir, "sparsity")
    one_shot.write_tensorboard(result, run_dir / result.model)
    report = {"model": ns.model, **asdict(result), "machine": machine}
    write_json(run_dir / "report.json", report)
    print(f"report: {run_dir / 'report.json'}\nTensorBoard: {cli.tensorboard_command(run_dir)}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
