"""The workbench on your own model: ``python -m tfbench.inspect MODEL``.

MODEL is a zoo name (``resnet50``), a Keras ``.keras`` or ``.h5`` file, a SavedModel folder, or
``package.module:factory`` with ``--allow-code``.  One report, in this order: the per-layer counts
(parameters, neurons, MACs, multiplications, additions; the TensorFlow profiler as a cross-check;
any layer type without a counting rule named), memory (torchsummary's estimate and the measured
peak of one forward and one training step), eager / ``tf.function`` / XLA (and bfloat16 where the
CPU has it), what grappler did, and every layer on this machine's roofline.  ``--quick`` stops
after the counts (seconds).  ``--scan`` only reads the file: every op of a SavedModel checked
against the allowlist of pure computation (nothing of it runs; docs/security.md).  Written to the
terminal, ``logs/bench/inspect-<time>.json`` and the TensorBoard run ``logs/inspect/<model>/<time>/``.
In a notebook: ``tfbench.inspect_model(...)``.  See docs/inspect.md.
"""

from __future__ import annotations

import sys
from typing import Sequence

from tfbench.plumbing import cli
from tfbench.plumbing.errors import UserError, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, inspect, print the sections and where the run and JSON went."""
    parser = cli.parser("inspect", __doc__.split("\n")[0])
    parser.add_argument("model", help=cli.MODEL_HELP)
    cli.add_model_source(parser)
    cli.add_batch_size(parser, 1, help="batch of the memory measurement, the timings and the roofline")
    cli.add_repeats(parser, 5)
    parser.add_argument("--quick", action="store_true", help="counts and the memory estimate only (seconds)")
    parser.add_argument("--scan", action="store_true", help="only scan the file, nothing of it runs: every op type "
                        "of a SavedModel (every layer class of a Keras file) with counts, the refused ones marked")
    parser.add_argument("--no-ablate", action="store_true", help="skip turning each grappler pass off alone")
    parser.add_argument("--json", action="store_true", help="print the JSON instead of the text")
    cli.add_seed(parser)
    cli.add_logdir(parser)
    cli.add_progress(parser)
    cli.add_verbose(parser)
    ns = cli.parse(parser, argv)
    if ns.scan:
        from tfbench.models.scan import scan_file

        text, refusal = scan_file(ns.model)
        print(text)
        if refusal and not ns.allow_code:
            raise UserError(refusal)
        return 0
    from tfbench.inspection.api import inspect_model
    from tfbench.models.load import parse_input_shape

    shape = parse_input_shape(ns.input_shape) if ns.input_shape else None
    report = inspect_model(ns.model, input_shape=shape, batch=ns.batch_size, quick=ns.quick,
                           allow_code=ns.allow_code, repeats=ns.repeats, ablate=not ns.no_ablate, logdir=ns.logdir,
                           progress=not ns.no_progress, seed=ns.seed)
    if ns.json:
        import json

        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report)
        print(f"\nreport: {report.json_path}\nTensorBoard: {cli.tensorboard_command(report.run_dir)}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
