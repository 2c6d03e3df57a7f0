"""What grappler does to a graph: before/after/partition views, per-pass toggles, pruning logs (ex. 5.10).

A ``tf.function`` is traced into a graph, then grappler (TensorFlow's graph optimiser, a
sequence of passes run by its "meta optimizer") rewrites it before it is partitioned per
device and executed.  This module shows all three stages of one call:

    python -m tfbench.graphs show conv_bias_relu            # op counts pre / post / partition
    python -m tfbench.graphs show vgg19 --image-size 224 --disable remapping
    python -m tfbench.graphs show resnet_block --ablate     # what each pass changes, one off at a time
    python -m tfbench.graphs vlog lenet5                    # grappler's own log, per pass (the "pruning logs")
    python -m tfbench.graphs show my_model.keras            # any model file, SavedModel or factory (models.load)

``show`` writes each graph as its own TensorBoard run under
``logs/graphs/<timestamp>/<model>/{pre,post,partition}`` (TensorBoard's trace view shows only
the graph *before* grappler).  ``vlog`` runs the model in a subprocess with
``TF_CPP_VMODULE=meta_optimizer=1,remapper=2,...`` because TensorFlow reads its logging
variables once, at start-up; the log is saved beside the summary.

Grappler options are process-global (``tf.config.optimizer.set_experimental_options``);
:func:`grappler_options` sets them for a block and restores the previous ones afterwards.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tfbench.models import registry
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli
from tfbench.plumbing.files import atomic_output
from tfbench.rewriting.grappler import (
    PASSES,
    count_table,
    disabled_options,
    format_count_table,
    grappler_options,
    parse_pass_list,
)
from tfbench.rewriting.passes import (
    DEFAULT_VMODULE,
    MODELS,
    ablate,
    build_workload,
    capture,
    capture_vlog,
    format_vlog_summary,
    parse_vlog,
    write_graphs,
)
from tfbench.timing import onednn_enabled


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="what to look at: one of the models below, or " + cli.MODEL_HELP.replace(
        "a model name, ", ""))
    cli.add_model_source(p)
    p.add_argument("--image-size", dest="size", type=cli.positive_int, default=None,
                   help="input height/width (default: vgg19 224, a multiple of 32; lenet5 32, its only size; "
                        "blocks 14)")
    cli.add_batch_size(p, 1, dest="batch")
    cli.add_verbose(p)
    p.add_argument("--keras", action="store_true", help="vgg19/lenet5: the Keras model instead of the tf.Module")
    p.add_argument("--disable", type=parse_pass_list, default=[],
                   help=f"comma-separated grappler passes to turn off: {', '.join(PASSES)}")


def build_parser() -> argparse.ArgumentParser:
    """The ``show`` / ``vlog`` / ``run`` command line."""
    parser = cli.parser("graphs", __doc__.split("\n\n")[0])
    parser.epilog = "models:\n" + "\n".join(f"  {k:18s} {v}" for k, v in MODELS.items())
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="op counts before/after grappler and in the partition graphs; "
                                       "TensorBoard runs", formatter_class=cli.HelpFormatter)
    _add_model_args(show)
    show.add_argument("--ablate", action="store_true", help="also turn each pass off alone and show what it changed")
    cli.add_logdir(show, help="where runs go")
    vlog = sub.add_parser("vlog", help="run the model in a subprocess with grappler's VLOG on; per-pass summary",
                          formatter_class=cli.HelpFormatter)
    _add_model_args(vlog)
    vlog.add_argument("--vmodule", default=DEFAULT_VMODULE, help=f"TF_CPP_VMODULE (default {DEFAULT_VMODULE})")
    vlog.add_argument("--max-vlog-level", type=int, default=None,
                      help="also set TF_CPP_MAX_VLOG_LEVEL (every source file; thousands of lines)")
    cli.add_logdir(vlog, help="where the log goes")
    run = sub.add_parser("run", help="call the model's tf.function once (what vlog runs in its subprocess)",
                         formatter_class=cli.HelpFormatter)
    _add_model_args(run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``show`` / ``vlog`` / ``run``; see ``--help``."""
    ns = cli.parse(build_parser(), argv)
    if ns.size is not None and ns.model in registry.SIZE_RULES:  # vgg19, lenet5: the registry's size rule
        problem = registry.input_size_error(ns.model, ns.size)
        if problem:
            raise UserError(problem)
    if ns.command == "vlog":
        return _vlog(ns)
    import tensorflow as tf

    workload = build_workload(ns.model, size=ns.size, batch=ns.batch, keras=ns.keras, input_shape=ns.input_shape,
                              allow_code=ns.allow_code)
    if ns.command == "run":
        with grappler_options(**disabled_options(ns.disable)):
            tf.function(workload.call)(workload.inputs).numpy()
        return 0
    graphs = capture(workload, ns.disable)
    label = workload.name + ("-keras" if ns.keras else "") + "".join(f"-no_{n}" for n in ns.disable)
    run = paths.run_dir(ns.logdir, "graphs") / label
    print(f"{workload.name} ({workload.note}), batch {ns.batch}; disabled: {', '.join(ns.disable) or 'nothing'}; "
          f"oneDNN kernels: {'on' if onednn_enabled() else 'off'}")
    print(format_count_table(count_table(graphs)))
    ablation = []
    if ns.ablate:
        from tfbench.timing import format_table

        ablation = ablate(workload)
        print("\nwhat each pass changes (post-grappler graph with that pass off, vs all passes on):")
        print(format_table(ablation))
    write_graphs(run, graphs, ablation)
    print(f"TensorBoard runs: {run}/{{pre,post,partition}}  ({cli.tensorboard_command(Path(ns.logdir) / 'graphs')})")
    return 0


def _vlog(ns: argparse.Namespace) -> int:
    text = capture_vlog(ns.model, size=ns.size, batch=ns.batch, keras=ns.keras, vmodule=ns.vmodule,
                        max_vlog_level=ns.max_vlog_level, disable=ns.disable, input_shape=ns.input_shape,
                        allow_code=ns.allow_code)
    run = paths.run_dir(ns.logdir, "graphs")
    label = ns.model if ns.model in MODELS else Path(ns.model).stem.replace(":", "_")
    log_path = run / f"{label}-vlog.txt"
    with atomic_output(log_path) as tmp:
        tmp.write_text(text)
    summary = format_vlog_summary(parse_vlog(text))
    with atomic_output(run / f"{label}-vlog-summary.txt") as tmp:
        tmp.write_text(summary + "\n")
    print(f"TF_CPP_MIN_LOG_LEVEL=0 TF_CPP_VMODULE={ns.vmodule}"
          + (f" TF_CPP_MAX_VLOG_LEVEL={ns.max_vlog_level}" if ns.max_vlog_level is not None else ""))
    print(summary)
    print(f"full log: {log_path}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
