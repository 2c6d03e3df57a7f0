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
from pathlib import Path
from typing import Any, Sequence

from tfbench.plumbing import cli
from tfbench.plumbing.errors import UserError, run_cli


def build_parser() -> argparse.ArgumentParser:
    from tfbench.processor.spec import shipped_names

    shipped = "shipped: " + ", ".join(shipped_names()) + "; or your .toml file"
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


def _numbers(text: str, flag: str, kind: type = int) -> list[Any]:
    try:
        values = [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        raise UserError(f"{flag}: expected comma-separated positive numbers, got {text!r}")
    return values


def _load_model(ref: str, ns: argparse.Namespace) -> tuple[Any, str]:
    from tfbench.models import load

    loaded = load.load(ref, input_shape=load.parse_input_shape(ns.input_shape) if ns.input_shape else None,
                       allow_code=ns.allow_code)
    if loaded.keras_model is None:
        raise UserError(f"{ref}: the compiler lowers Keras layers and this {loaded.source} has none; save the model "
                        "as .keras or give a factory returning a Keras model")
    return loaded.keras_model, loaded.name


def _write(ns: argparse.Namespace, sub: str, rows: list[dict[str, Any]], texts: dict[str, str],
           images: dict[str, Path], extra: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """TensorBoard cards and images in ``run_dir``, the JSON report; return the report."""
    from tfbench import timing
    from tfbench.reporting import summaries

    summaries.write_text(run_dir, texts)
    if images:
        import matplotlib.image

        summaries.write_images(run_dir, {tag: (matplotlib.image.imread(path)[..., :3] * 255).round().astype("uint8")
                                         for tag, path in images.items()})
    extra = {**extra, "run_dir": str(run_dir), "settings": {k: v for k, v in vars(ns).items() if k != "verbose"}}
    return timing.report(f"dlp-{sub}", rows, {}, logdir=ns.logdir, extra=extra, quiet=True)


def _markdown(rows: Sequence[dict[str, Any]]) -> str:
    from tfbench.reporting.summaries import markdown_table

    if not rows:
        return "(nothing)"
    head = list(rows[0])
    return markdown_table(head, [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()] for r in rows])


# --------------------------------------------------------------------------------------------- run


def cmd_run(ns: argparse.Namespace) -> dict[str, Any]:
    from tfbench import timing
    from tfbench.plumbing import paths
    from tfbench.processor import language, simulator, spec

    text, source = language.read_program(ns.program)
    processor = spec.load(ns.processor or language.declared_processor(text) or "course_7_7")
    program = language.parse(text, source)
    language.check(program, processor, source)
    result = simulator.simulate(program, processor)
    print(spec.describe(processor))
    print(f"{source}: {result.cycles} cycles = {result.seconds * 1e6:.3f} us at {processor.clock / 1e9:g} GHz; "
          f"{result.instructions} instructions executed in {result.segments} sync segments")
    rows = [{"path": k, "bytes": v} for k, v in result.bytes.items()]
    rows += [{"unit or link": k, "busy_cycles": result.busy[k], "busy": f"{v:.1%}"}
             for k, v in result.busy_fraction().items()]
    print(timing.format_table([{"path": k, "bytes": v} for k, v in result.bytes.items()]))
    print(timing.format_table([{"resource": k, "busy_cycles": result.busy[k], "busy": f"{v:.1%}"}
                              for k, v in result.busy_fraction().items()]))
    print("ops: " + ", ".join(f"{k} {v}" for k, v in result.ops.items()))
    run_dir = paths.run_dir(ns.logdir, "dlp")
    events, truncated = simulator.timeline(program, processor, limit=ns.timeline)
    png = simulator.plot_timeline(events, run_dir / "timeline.png",
                                  f"{source} on {processor.name}"
                                  + (f" (first {len(events)} instructions)" if truncated else ""))
    summary = (f"{source} on {processor.name}: {result.cycles} cycles = {result.seconds * 1e6:.3f} us\n\n"
               f"```\n{text}\n```")
    report = _write(ns, "run", rows, {"dlp/run": summary, "dlp/table": _markdown(rows)}, {"dlp/timeline": png},
                    {"result": result.to_json(), "program": source}, run_dir)
    print(f"timeline: {png}\nTensorBoard: {cli.tensorboard_command(run_dir)}\nreport: {report['path']}")
    return report


# ------------------------------------------------------------------------------------------- model


def cmd_model(ns: argparse.Namespace) -> dict[str, Any]:
    from tfbench import timing
    from tfbench.plumbing import paths
    from tfbench.plumbing.files import atomic_output
    from tfbench.processor import compiler, language, spec, workload

    ratios = (1.0, 1.0)
    if ns.sparsity:
        values = _numbers(ns.sparsity, "--sparsity", float)
        if len(values) != 2 or any(v > 1 for v in values):
            raise UserError(f"--sparsity: expected WEIGHTS,INPUTS fractions in (0, 1], like 0.25,0.5; got "
                            f"{ns.sparsity!r}")
        ratios = (values[0], values[1])
    processor = spec.load(ns.processor)
    model, name = _load_model(ns.model, ns)
    work, counts = workload.model_work(model, name)
    compiled = compiler.compile_work(work, processor, ratios)
    rows = compiler.table_rows(compiled)
    print(spec.describe(processor))
    shown = sorted(rows, key=lambda r: -r["cycles"])[:ns.top] if ns.top else rows
    print(timing.format_table([{k: r[k] for k in ("layer", "kind", "macs", "cycles", "us", "share", "bound",
                                                 "utilisation")} for r in shown]))
    unknown = [w.name for w in compiled.skipped if w.lowering == "unknown"]
    memory_share = sum(r["share"] for r in rows if r["bound"] == "memory")
    lines = [f"{name} on {processor.name}: {compiled.cycles} cycles = {compiled.seconds * 1e3:.3f} ms, "
             f"{compiled.macs} MACs (tfbench counts {counts.total('macs')}), utilisation of the matrix unit "
             f"{compiled.utilisation():.1%}, {compiled.dram_bytes() / 2 ** 20:.1f} MB to and from DRAM",
             f"compute-bound layers: {sum(r['bound'] == 'compute' for r in rows)}, memory-bound: "
             f"{sum(r['bound'] == 'memory' for r in rows)} ({memory_share:.0%} of the time)"]
    if ratios != (1.0, 1.0):
        lines.append(f"weights moved at {ratios[0]:g}, inputs at {ratios[1]:g} of their size (MACs unchanged)")
    if unknown:
        lines.append(f"not simulated (no counting rule): {', '.join(unknown)}")
    slowest = max(rows, key=lambda r: r["cycles"]) if rows else None
    if slowest:
        lines.append(f"slowest layer {slowest['layer']}: {slowest['choice']}")
    for line in lines:
        print(line)
    run_dir = paths.run_dir(ns.logdir, "dlp")
    program_path = run_dir / "program.dlp"
    with atomic_output(program_path) as tmp:
        parts = [f"# processor: {Path(processor.source).stem}\n# {name}, compiled by tfbench.processor.compiler"]
        for layer in compiled.layers:
            parts.append(f"# layer {layer.work.name} ({layer.work.kind}): {layer.explanation}\n"
                         + language.render(layer.program))
        tmp.write_text("\n".join(parts) + "\n")
    choices = "\n".join(f"- **{r['layer']}**: {r['choice']}" for r in rows)
    report = _write(ns, "model", rows, {"dlp/summary": "\n\n".join(lines), "dlp/layers": _markdown(rows),
                                        "dlp/tilings": choices}, {},
                    {"model": name, "processor": processor.name, "cycles": compiled.cycles,
                     "seconds": compiled.seconds, "macs": compiled.macs, "counted_macs": counts.total("macs"),
                     "utilisation": compiled.utilisation(), "dram_bytes": compiled.dram_bytes(),
                     "program": str(program_path), "summary": lines}, run_dir)
    print(f"program: {program_path}\nTensorBoard: {cli.tensorboard_command(run_dir)}\nreport: {report['path']}")
    return report


# ------------------------------------------------------------------------------------------- sweep


def cmd_sweep(ns: argparse.Namespace) -> dict[str, Any]:
    from tfbench import timing
    from tfbench.plumbing import paths
    from tfbench.processor import spec, sweep, workload

    sizes = _numbers(ns.sizes, "--sizes")
    processors = [spec.load(p.strip()) for p in ns.processors.split(",") if p.strip()]
    model, name = _load_model(ns.model, ns)
    work, _ = workload.model_work(model, name)
    rows = []
    for processor in processors:
        print(f"sweeping {processor.name} on {name} ...", flush=True)
        rows += sweep.sweep(work, processor, sizes)
    print(timing.format_table(rows))
    run_dir = paths.run_dir(ns.logdir, "dlp")
    png = sweep.plot(rows, run_dir / "sweep.png", f"{name}: utilisation as the matrix unit grows")
    report = _write(ns, "sweep", rows, {"dlp/sweep": _markdown(rows)}, {"dlp/sweep": png},
                    {"model": name, "png": str(png)}, run_dir)
    print(f"PNG: {png}\nTensorBoard: {cli.tensorboard_command(run_dir)}\nreport: {report['path']}")
    return report


# ---------------------------------------------------------------------------------------- roofline


def cmd_roofline(ns: argparse.Namespace) -> dict[str, Any]:
    from tfbench import timing
    from tfbench.plumbing import paths
    from tfbench.processor import compiler, roofline, spec, workload

    processor = spec.load(ns.processor)
    limits = roofline.roof(processor)
    rows = []
    for ref in ns.models:
        print(f"compiling {ref} for {processor.name} ...", flush=True)
        model, name = _load_model(ref, ns)
        rows += roofline.points(name, compiler.compile_work(workload.model_work(model, name)[0], processor))
    print(f"roof: {limits['peak_flops'] / 1e9:.0f} GFLOP/s, {limits['bandwidth'] / 1e9:g} GB/s, ridge "
          f"{limits['ridge']:.1f} FLOP/byte")
    wholes = [r for r in rows if r["kind"] == "model"]
    print(timing.format_table([{"network": r["model"], "GFLOP": r["flops"] / 1e9, "MB": r["bytes"] / 2 ** 20,
                               "FLOP/B": r["intensity"], "GFLOP/s": r["flops_per_s"] / 1e9,
                               "of peak": r["flops_per_s"] / limits["peak_flops"]} for r in wholes]))
    run_dir = paths.run_dir(ns.logdir, "dlp")
    png = roofline.plot(rows, limits, run_dir / "roofline.png", f"{processor.name}: simulated layers on its roofline")
    report = _write(ns, "roofline", rows, {"dlp/roofline": _markdown(rows)}, {"dlp/roofline": png},
                    {"roof": limits, "png": str(png)}, run_dir)
    print(f"PNG: {png}\nTensorBoard: {cli.tensorboard_command(run_dir)}\nreport: {report['path']}")
    return report


# ------------------------------------------------------------------------------------------ amdahl


def cmd_amdahl(ns: argparse.Namespace) -> dict[str, Any]:
    from tfbench import timing
    from tfbench.plumbing import paths
    from tfbench.processor import amdahl, compiler, spec, workload

    faster = amdahl.parse_faster(ns.faster)
    model, name = _load_model(ns.model, ns)
    work, counts = workload.model_work(model, name)
    sources = {"MACs (tfbench count)": amdahl.group({c.name: (c.kind, c.macs) for c in counts.layers})}
    if not ns.no_measure:
        print(f"timing the layers of {name} on this CPU (batch 1, {ns.repeats} rounds) ...", flush=True)
        sources["measured on this CPU"] = amdahl.group(amdahl.measured(model, name, repeats=ns.repeats))
    processor = spec.load(ns.processor)
    compiled = compiler.compile_work(work, processor)
    sources[f"simulated on {processor.name}"] = amdahl.group(
        {f"{lw.work.name}#{i}": (lw.work.kind, lw.result.cycles) for i, lw in enumerate(compiled.layers)})
    rows = amdahl.table(sources, faster)
    print(f"{name}: " + ", ".join(f"{k} {v:g}x faster" for k, v in faster.items()))
    print(timing.format_table(rows))
    run_dir = paths.run_dir(ns.logdir, "dlp")
    info = timing.machine_info()
    note = f"measured on {info['cpu']} ({info['cores']} cores), TF {info['tf_version']}; a shared machine"
    report = _write(ns, "amdahl", rows, {"dlp/amdahl": _markdown(rows) + "\n\n" + note}, {},
                    {"model": name, "faster": faster}, run_dir)
    print(f"{note}\nreport: {report['path']}")
    return report


COMMANDS = {"run": cmd_run, "model": cmd_model, "sweep": cmd_sweep, "roofline": cmd_roofline, "amdahl": cmd_amdahl}


def main(argv: Sequence[str] | None = None) -> int:
    ns = cli.parse(build_parser(), argv)
    COMMANDS[ns.command](ns)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
