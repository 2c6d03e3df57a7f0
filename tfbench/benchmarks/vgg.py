"""``python -m tfbench.bench vgg``: VGG19's forward pass eagerly, as a ``tf.function`` and with XLA, at a
few batch sizes, timed round robin (the main job's modes, :mod:`tfbench.inspection.main_job`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tfbench.inspection.main_job import prepare_input, run_modes, speedups
from tfbench.plumbing import cli


def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """``python -m tfbench.bench vgg``: eager vs tf.function vs XLA latency at a few batch sizes."""
    parser = cli.parser("bench vgg", "VGG19 forward: eager vs tf.function vs XLA at a few batch sizes.")
    parser.add_argument("--batch-sizes", dest="batches", type=cli.positive_int, nargs="+", default=[1, 4],
                        help="batch sizes to time")
    cli.add_repeats(parser, 5)
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA variant")
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    args = cli.parse(parser, argv)
    from tfbench import models
    from tfbench import timing as harness
    from tfbench.data import weights as weight_files

    weights = weight_files.random()
    model = models.get("vgg19", impl="module", weights=weights.layers)
    prepared = prepare_input(None, weights.input_spec, 1)
    rows, ratios = [], {}
    for batch in args.batches:
        _, timings = run_modes(model, np.repeat(prepared.batch, batch, axis=0), xla=not args.no_xla,
                               bench=True, repeats=args.repeats)
        ratios.update(speedups(timings, f", batch {batch}"))
        for t in timings:
            t.case = f"{t.case} batch {batch}"
        rows += timings
    return harness.report("vgg", rows, ratios, logdir=args.logdir)
