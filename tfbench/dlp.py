"""The deep-learning processor of chapters 6 and 7, programmed and simulated (exercises 6.2-6.13, 7.7-7.12).

``python -m tfbench.dlp SUBCOMMAND``:

- ``run PROGRAM``: simulate a program of the course's language (a file, or a shipped one: ``ex7_7`` ...
  ``ex7_12``) on a processor file (``--processor``; shipped: course_7_7, course_7_11, dlp_6_8,
  scalar_mac_6_9, systolic_32x32_os, or your own .toml): cycles, time, bytes per path, busy units, a timeline;
- ``model MODEL``: compile a model (registry name, .keras, .h5, SavedModel, factory with --allow-code) into
  tiled programs that fit the memories, simulate them: per-layer time, bound, utilisation, the tiling chosen;
  ``--sparsity 0.25,0.5`` moves weights and inputs compressed to those fractions (7.10);
- ``sweep MODEL``: utilisation and time as the matrix unit grows, at 12.8 GB/s, DLP and scalar MACs (6.8, 6.9);
- ``roofline MODELS...``: the processor's roofline with every layer and whole network on it (6.10, 6.13);
- ``amdahl MODEL``: the speed-up when convolutions / fully connected layers get faster (6.2), from MAC shares,
  from the layers timed on this CPU, and from the simulated shares.

Every subcommand prints tables, writes ``logs/dlp/<timestamp>/`` (TensorBoard text cards and plots, the
compiled program) and ``logs/bench/dlp-<subcommand>-<timestamp>.json``.  The processor, the language and the
timing rule are described in :mod:`tfbench.processor`; docs/processor.md works the exercises through.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence

from tfbench.plumbing import cli
from tfbench.plumbing.errors import run_cli
from tfbench.processor import amdahl, experiments, spec


def build_parser() -> argparse.ArgumentParser:
    shipped = "shipped: " + ", ".join(spec.shipped_names()) + "; or your .toml file"
    parser = cli.parser("dlp", __doc__.split("\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    cli.add_logdir(common)
    cli.add_verbose(common)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", parents=[common], help="simulate a program (a file or ex7_7 ... ex7_12)",
                       formatter_class=cli.HelpFormatter)
    r.add_argument("program", help="a .dlp file, or a shipped program: ex7_7, ex7_8, ex7_9, ex7_10, ex7_11, ex7_12")
    r.add_argument("--processor", help=f"{shipped} (default: the one the program names in '# processor: NAME', "
                                       "else course_7_7)")
    r.add_argument("--timeline", type=cli.positive_int, default=400, help="instructions drawn in the timeline")
    m = sub.add_parser("model", parents=[common], help="compile a model and simulate it",
                       formatter_class=cli.HelpFormatter)
    m.add_argument("model", help=cli.MODEL_HELP)
    m.add_argument("--processor", default="course_7_7", help=shipped)
    m.add_argument("--sparsity", default=None, help="WEIGHTS,INPUTS: fractions of the bytes moved, like 0.25,0.5 "
                                                    "(exercise 7.10)")
    m.add_argument("--top", type=cli.non_negative_int, default=0,
                   help="print only the N slowest layers; 0 prints them all")
    cli.add_model_source(m)
    s = sub.add_parser("sweep", parents=[common], help="utilisation as the matrix unit grows (6.8, 6.9)",
                       formatter_class=cli.HelpFormatter)
    s.add_argument("model", nargs="?", default="alexnet", help=cli.MODEL_HELP)
    s.add_argument("--processors", default="dlp_6_8,scalar_mac_6_9", help=f"comma-separated processors ({shipped})")
    s.add_argument("--sizes", default="16,32,64,128,256,512,1024,2048,4096", help="MACs per cycle, comma-separated")
    cli.add_model_source(s)
    f = sub.add_parser("roofline", parents=[common], help="the processor's roofline with layers on it (6.10, 6.13)",
                       formatter_class=cli.HelpFormatter)
    f.add_argument("models", nargs="*", default=["alexnet", "vgg19", "resnet50"], help="models (" + cli.MODEL_HELP
                   + ")")
    f.add_argument("--processor", default="course_7_7", help=shipped)
    cli.add_model_source(f)
    a = sub.add_parser("amdahl", parents=[common], help="6.2: speed-up when some layer types are faster",
                       formatter_class=cli.HelpFormatter)
    a.add_argument("model", nargs="?", default="alexnet", help=cli.MODEL_HELP)
    a.add_argument("--faster", default="conv=10,fc=2", help="TYPE=FACTOR,... with TYPE conv, fc or other")
    a.add_argument("--processor", default="course_7_7", help="processor for the simulated shares")
    a.add_argument("--no-measure", action="store_true", help="skip timing the layers on this CPU")
    cli.add_repeats(a, 3)
    cli.add_model_source(a)
    return parser


def _progress(line: str) -> None:
    print(line, flush=True)


def _settings(ns: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(ns).items() if k != "verbose"}


def _finish(ns: argparse.Namespace, run: Any, write: Callable[..., Any], label: str, **options: Any) -> dict[str, Any]:
    """Print what ``run`` found, write its outputs, print where they are (``label``: the picture or program)."""
    print("\n".join(run.lines))
    written = write(run, logdir=ns.logdir, settings=_settings(ns), **options)
    print(f"{label}: {written.program or written.picture}\nTensorBoard: {cli.tensorboard_command(written.run_dir)}\n"
          f"report: {written.report['path']}")
    return written.report


def cmd_run(ns: argparse.Namespace) -> dict[str, Any]:
    run = experiments.run_program(ns.program, ns.processor)
    return _finish(ns, run, experiments.write_program_run, "timeline", timeline_limit=ns.timeline)


def cmd_model(ns: argparse.Namespace) -> dict[str, Any]:
    ratios = experiments.parse_sparsity(ns.sparsity) if ns.sparsity else (1.0, 1.0)
    run = experiments.compile_model(ns.model, ns.processor, input_shape=ns.input_shape, allow_code=ns.allow_code,
                                    ratios=ratios, top=ns.top)
    return _finish(ns, run, experiments.write_model_run, "program")


def cmd_sweep(ns: argparse.Namespace) -> dict[str, Any]:
    sizes = cli.comma_numbers(ns.sizes, "--sizes")
    run = experiments.sweep_model(ns.model, [p.strip() for p in ns.processors.split(",") if p.strip()], sizes,
                                  input_shape=ns.input_shape, allow_code=ns.allow_code, progress=_progress)
    return _finish(ns, run, experiments.write_sweep_run, "PNG")


def cmd_roofline(ns: argparse.Namespace) -> dict[str, Any]:
    run = experiments.roofline_models(ns.models, ns.processor, input_shape=ns.input_shape,
                                      allow_code=ns.allow_code, progress=_progress)
    return _finish(ns, run, experiments.write_roofline_run, "PNG")


def cmd_amdahl(ns: argparse.Namespace) -> dict[str, Any]:
    run = experiments.amdahl_model(ns.model, amdahl.parse_faster(ns.faster), ns.processor,
                                   measure=not ns.no_measure, repeats=ns.repeats, input_shape=ns.input_shape,
                                   allow_code=ns.allow_code, progress=_progress)
    print("\n".join(run.lines))
    written = experiments.write_amdahl_run(run, logdir=ns.logdir, settings=_settings(ns))
    print(f"{run.note}\nreport: {written.report['path']}")
    return written.report


COMMANDS = {"run": cmd_run, "model": cmd_model, "sweep": cmd_sweep, "roofline": cmd_roofline, "amdahl": cmd_amdahl}


def main(argv: Sequence[str] | None = None) -> int:
    ns = cli.parse(build_parser(), argv)
    COMMANDS[ns.command](ns)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
