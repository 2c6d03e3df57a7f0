"""The five experiments of ``python -m tfbench.dlp``, each in two steps: work it out, then write what it found.

- :func:`run_program`, :func:`write_program_run`: a program of the course's language simulated on a processor
  (exercises 7.7-7.12): cycles, time, bytes per path, busy units; then its timeline picture;
- :func:`compile_model`, :func:`write_model_run`: a model compiled into tiled programs that fit the memories and
  simulated (7.10 with ``ratios``): per-layer time, bound, utilisation; then the compiled ``program.dlp``;
- :func:`sweep_model`, :func:`write_sweep_run`: utilisation and time as the matrix unit grows (6.8, 6.9);
- :func:`roofline_models`, :func:`write_roofline_run`: every layer and whole network on the roofline (6.10, 6.13);
- :func:`amdahl_model`, :func:`write_amdahl_run`: the speed-up when some layer types get faster (6.2).

The first step returns the numbers and ``lines``, the text and tables a command prints; nothing is written yet,
so a command prints its tables before any file exists.  The second writes ``<logdir>/dlp/<timestamp>/``
(TensorBoard Text cards and Images, the picture or the program) and ``<logdir>/bench/dlp-<name>-<timestamp>.json``
through :func:`write_outputs`, and returns where (:class:`Written`).  ``settings`` is the command's options as a
plain dict, kept in the JSON report.  ``progress`` receives a line before each slow step.  Beside them:
:func:`load_keras_model` (what the compiler can lower), :func:`parse_sparsity` (7.10's
WEIGHTS,INPUTS option, with errors that name the flag).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tfbench import timing
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError
from tfbench.plumbing.files import atomic_output
from tfbench.processor import amdahl, compiler, language, roofline, simulator, spec, sweep, workload
from tfbench.processor.language import Instruction
from tfbench.processor.spec import Processor
from tfbench.reporting.tables import markdown_rows

Progress = Callable[[str], None]


def _quiet(line: str) -> None:
    """The default ``progress``: say nothing."""


@dataclass
class Written:
    """What an experiment wrote: its run folder, the JSON report (with its ``path``), its picture or program."""

    run_dir: Path
    report: dict[str, Any]
    picture: Path | None = None
    program: Path | None = None


def parse_sparsity(text: str, flag: str = "--sparsity") -> tuple[float, float]:
    """``WEIGHTS,INPUTS``: the fractions of their size at which weights and inputs are moved (7.10), in (0, 1]."""
    values = cli.comma_numbers(text, flag, float)
    if len(values) != 2 or any(v > 1 for v in values):
        raise UserError(f"{flag}: expected WEIGHTS,INPUTS fractions in (0, 1], like 0.25,0.5; got {text!r}")
    return values[0], values[1]


def write_outputs(name: str, rows: list[dict[str, Any]], texts: dict[str, str], images: dict[str, Path],
                  extra: dict[str, Any], run_dir: Path, *, logdir: str | Path,
                  settings: dict[str, Any]) -> dict[str, Any]:
    """TensorBoard Text cards ``texts`` and the PNGs ``images`` in ``run_dir``, the JSON report; return the report."""
    from tfbench.reporting import summaries

    summaries.write_text(run_dir, texts)
    if images:
        import matplotlib.image

        summaries.write_images(run_dir, {tag: (matplotlib.image.imread(path)[..., :3] * 255).round().astype("uint8")
                                         for tag, path in images.items()})
    extra = {**extra, "run_dir": str(run_dir), "settings": settings}
    return timing.report(f"dlp-{name}", rows, {}, logdir=logdir, extra=extra, quiet=True)


def load_keras_model(ref: str, input_shape: str | None = None, allow_code: bool = False) -> tuple[Any, str]:
    """The Keras model ``ref`` names (:func:`tfbench.models.load.load`) and its name; a model without Keras
    layers is refused, since the compiler lowers Keras layers."""
    from tfbench.models import load

    loaded = load.load(ref, input_shape=load.parse_input_shape(input_shape) if input_shape else None,
                       allow_code=allow_code)
    if loaded.keras_model is None:
        raise UserError(f"{ref}: the compiler lowers Keras layers and this {loaded.source} has none; save the model "
                        "as .keras or give a factory returning a Keras model")
    return loaded.keras_model, loaded.name


# --------------------------------------------------------------------------------------------- run


@dataclass
class ProgramRun:
    """A program simulated: its text, the processor, the parsed program, the simulator's result, the lines."""

    source: str
    text: str
    processor: Processor
    program: list[Instruction]
    result: simulator.Result
    rows: list[dict[str, Any]]
    lines: list[str]


def run_program(ref: str, processor_ref: str | None = None) -> ProgramRun:
    """Simulate the program ``ref`` (a file or a shipped name) on ``processor_ref``, else the processor the program
    declares (``# processor: NAME``), else course_7_7."""
    text, source = language.read_program(ref)
    processor = spec.load(processor_ref or language.declared_processor(text) or "course_7_7")
    program = language.parse(text, source)
    language.check(program, processor, source)
    result = simulator.simulate(program, processor)
    rows = [{"path": k, "bytes": v} for k, v in result.bytes.items()]
    rows += [{"unit or link": k, "busy_cycles": result.busy[k], "busy": f"{v:.1%}"}
             for k, v in result.busy_fraction().items()]
    lines = [spec.describe(processor),
             f"{source}: {result.cycles} cycles = {result.seconds * 1e6:.3f} us at {processor.clock / 1e9:g} GHz; "
             f"{result.instructions} instructions executed in {result.segments} sync segments",
             timing.format_table([{"path": k, "bytes": v} for k, v in result.bytes.items()]),
             timing.format_table([{"resource": k, "busy_cycles": result.busy[k], "busy": f"{v:.1%}"}
                                  for k, v in result.busy_fraction().items()]),
             "ops: " + ", ".join(f"{k} {v}" for k, v in result.ops.items())]
    return ProgramRun(source, text, processor, program, result, rows, lines)


def write_program_run(run: ProgramRun, *, timeline_limit: int, logdir: str | Path,
                      settings: dict[str, Any]) -> Written:
    """The timeline of the first ``timeline_limit`` instructions as a PNG, the program as a Text card, the report."""
    run_dir = paths.run_dir(logdir, "dlp")
    events, truncated = simulator.timeline(run.program, run.processor, limit=timeline_limit)
    png = simulator.plot_timeline(events, run_dir / "timeline.png",
                                  f"{run.source} on {run.processor.name}"
                                  + (f" (first {len(events)} instructions)" if truncated else ""))
    summary = (f"{run.source} on {run.processor.name}: {run.result.cycles} cycles = "
               f"{run.result.seconds * 1e6:.3f} us\n\n```\n{run.text}\n```")
    report = write_outputs("run", run.rows, {"dlp/run": summary, "dlp/table": markdown_rows(run.rows)},
                           {"dlp/timeline": png}, {"result": run.result.to_json(), "program": run.source}, run_dir,
                           logdir=logdir, settings=settings)
    return Written(run_dir, report, picture=png)


# ------------------------------------------------------------------------------------------- model


@dataclass
class ModelRun:
    """A model compiled and simulated: the compiled layers, tfbench's counts, per-layer rows, the summary lines
    (``summary``) and everything the command prints (``lines``)."""

    name: str
    processor: Processor
    compiled: compiler.Compiled
    counts: Any
    rows: list[dict[str, Any]]
    summary: list[str]
    lines: list[str]


def compile_model(model_ref: str, processor_ref: str, *, input_shape: str | None = None, allow_code: bool = False,
                  ratios: tuple[float, float] = (1.0, 1.0), top: int = 0) -> ModelRun:
    """Compile the model ``model_ref`` (:func:`load_keras_model`) for ``processor_ref``, weights and inputs moved at
    ``ratios`` of their size (7.10), and simulate it; the printed table shows the ``top`` slowest layers (0: all)."""
    processor = spec.load(processor_ref)
    model, name = load_keras_model(model_ref, input_shape, allow_code)
    work, counts = workload.model_work(model, name)
    compiled = compiler.compile_work(work, processor, ratios)
    rows = compiler.table_rows(compiled)
    shown = sorted(rows, key=lambda r: -r["cycles"])[:top] if top else rows
    unknown = [w.name for w in compiled.skipped if w.lowering == "unknown"]
    memory_share = sum(r["share"] for r in rows if r["bound"] == "memory")
    summary = [f"{name} on {processor.name}: {compiled.cycles} cycles = {compiled.seconds * 1e3:.3f} ms, "
               f"{compiled.macs} MACs (tfbench counts {counts.total('macs')}), utilisation of the matrix unit "
               f"{compiled.utilisation():.1%}, {compiled.dram_bytes() / 2 ** 20:.1f} MB to and from DRAM",
               f"compute-bound layers: {sum(r['bound'] == 'compute' for r in rows)}, memory-bound: "
               f"{sum(r['bound'] == 'memory' for r in rows)} ({memory_share:.0%} of the time)"]
    if ratios != (1.0, 1.0):
        summary.append(f"weights moved at {ratios[0]:g}, inputs at {ratios[1]:g} of their size (MACs unchanged)")
    if unknown:
        summary.append(f"not simulated (no counting rule): {', '.join(unknown)}")
    slowest = max(rows, key=lambda r: r["cycles"]) if rows else None
    if slowest:
        summary.append(f"slowest layer {slowest['layer']}: {slowest['choice']}")
    lines = [spec.describe(processor),
             timing.format_table([{k: r[k] for k in ("layer", "kind", "macs", "cycles", "us", "share", "bound",
                                                    "utilisation")} for r in shown]),
             *summary]
    return ModelRun(name, processor, compiled, counts, rows, summary, lines)


def write_model_run(run: ModelRun, *, logdir: str | Path, settings: dict[str, Any]) -> Written:
    """The compiled program (``program.dlp``, every layer's tiled program with why it was chosen), the summary,
    layer table and tilings as Text cards, the report."""
    run_dir = paths.run_dir(logdir, "dlp")
    program_path = run_dir / "program.dlp"
    with atomic_output(program_path) as tmp:
        parts = [f"# processor: {Path(run.processor.source).stem}\n"
                 f"# {run.name}, compiled by tfbench.processor.compiler"]
        for layer in run.compiled.layers:
            parts.append(f"# layer {layer.work.name} ({layer.work.kind}): {layer.explanation}\n"
                         + language.render(layer.program))
        tmp.write_text("\n".join(parts) + "\n")
    compiled = run.compiled
    choices = "\n".join(f"- **{r['layer']}**: {r['choice']}" for r in run.rows)
    report = write_outputs("model", run.rows, {"dlp/summary": "\n\n".join(run.summary),
                                               "dlp/layers": markdown_rows(run.rows), "dlp/tilings": choices}, {},
                           {"model": run.name, "processor": run.processor.name, "cycles": compiled.cycles,
                            "seconds": compiled.seconds, "macs": compiled.macs,
                            "counted_macs": run.counts.total("macs"), "utilisation": compiled.utilisation(),
                            "dram_bytes": compiled.dram_bytes(), "program": str(program_path),
                            "summary": run.summary}, run_dir, logdir=logdir, settings=settings)
    return Written(run_dir, report, program=program_path)


# ------------------------------------------------------------------------------------------- sweep


@dataclass
class SweepRun:
    """The model's name and one row per processor and size (:func:`tfbench.processor.sweep.sweep`)."""

    name: str
    rows: list[dict[str, Any]]
    lines: list[str]


def sweep_model(model_ref: str, processor_refs: Sequence[str], sizes: Sequence[int], *,
                input_shape: str | None = None, allow_code: bool = False,
                progress: Progress = _quiet) -> SweepRun:
    """Compile the model for each processor with its matrix unit at each size of ``sizes`` (MACs per cycle)."""
    processors = [spec.load(ref) for ref in processor_refs]
    model, name = load_keras_model(model_ref, input_shape, allow_code)
    work, _ = workload.model_work(model, name)
    rows: list[dict[str, Any]] = []
    for processor in processors:
        progress(f"sweeping {processor.name} on {name} ...")
        rows += sweep.sweep(work, processor, sizes)
    return SweepRun(name, rows, [timing.format_table(rows)])


def write_sweep_run(run: SweepRun, *, logdir: str | Path, settings: dict[str, Any]) -> Written:
    """The sweep's picture, its table as a Text card, the report."""
    run_dir = paths.run_dir(logdir, "dlp")
    png = sweep.plot(run.rows, run_dir / "sweep.png", f"{run.name}: utilisation as the matrix unit grows")
    report = write_outputs("sweep", run.rows, {"dlp/sweep": markdown_rows(run.rows)}, {"dlp/sweep": png},
                           {"model": run.name, "png": str(png)}, run_dir, logdir=logdir, settings=settings)
    return Written(run_dir, report, picture=png)


# ---------------------------------------------------------------------------------------- roofline


@dataclass
class RooflineRun:
    """The processor, its roof (:func:`tfbench.processor.roofline.roof`) and one point per layer and network."""

    processor: Processor
    limits: dict[str, float]
    rows: list[dict[str, Any]]
    lines: list[str]


def roofline_models(model_refs: Sequence[str], processor_ref: str, *, input_shape: str | None = None,
                    allow_code: bool = False, progress: Progress = _quiet) -> RooflineRun:
    """Compile each model for the processor and place every layer, and each whole network, under its roof."""
    processor = spec.load(processor_ref)
    limits = roofline.roof(processor)
    rows: list[dict[str, Any]] = []
    for ref in model_refs:
        progress(f"compiling {ref} for {processor.name} ...")
        model, name = load_keras_model(ref, input_shape, allow_code)
        rows += roofline.points(name, compiler.compile_work(workload.model_work(model, name)[0], processor))
    wholes = [r for r in rows if r["kind"] == "model"]
    lines = [f"roof: {limits['peak_flops'] / 1e9:.0f} GFLOP/s, {limits['bandwidth'] / 1e9:g} GB/s, ridge "
             f"{limits['ridge']:.1f} FLOP/byte",
             timing.format_table([{"network": r["model"], "GFLOP": r["flops"] / 1e9, "MB": r["bytes"] / 2 ** 20,
                                   "FLOP/B": r["intensity"], "GFLOP/s": r["flops_per_s"] / 1e9,
                                   "of peak": r["flops_per_s"] / limits["peak_flops"]} for r in wholes])]
    return RooflineRun(processor, limits, rows, lines)


def write_roofline_run(run: RooflineRun, *, logdir: str | Path, settings: dict[str, Any]) -> Written:
    """The roofline picture, every point as a Text card, the report."""
    run_dir = paths.run_dir(logdir, "dlp")
    png = roofline.plot(run.rows, run.limits, run_dir / "roofline.png",
                        f"{run.processor.name}: simulated layers on its roofline")
    report = write_outputs("roofline", run.rows, {"dlp/roofline": markdown_rows(run.rows)}, {"dlp/roofline": png},
                           {"roof": run.limits, "png": str(png)}, run_dir, logdir=logdir, settings=settings)
    return Written(run_dir, report, picture=png)


# ------------------------------------------------------------------------------------------ amdahl


@dataclass
class AmdahlRun:
    """The speed-ups of 6.2 from each source of shares (:func:`tfbench.processor.amdahl.table`), and where the
    CPU timings were taken (``note``)."""

    name: str
    faster: dict[str, float]
    rows: list[dict[str, Any]]
    note: str
    lines: list[str]


def amdahl_model(model_ref: str, faster: dict[str, float], processor_ref: str, *, measure: bool = True,
                 repeats: int = 3, input_shape: str | None = None, allow_code: bool = False,
                 progress: Progress = _quiet) -> AmdahlRun:
    """The speed-up when the layer types of ``faster`` (``amdahl.parse_faster``) get that much faster, with the
    shares taken from the MACs counted, from the layers timed on this CPU (``measure``, ``repeats`` rounds) and
    from the layers simulated on ``processor_ref``."""
    model, name = load_keras_model(model_ref, input_shape, allow_code)
    work, counts = workload.model_work(model, name)
    sources = {"MACs (tfbench count)": amdahl.group({c.name: (c.kind, c.macs) for c in counts.layers})}
    if measure:
        progress(f"timing the layers of {name} on this CPU (batch 1, {repeats} rounds) ...")
        sources["measured on this CPU"] = amdahl.group(amdahl.measured(model, name, repeats=repeats))
    processor = spec.load(processor_ref)
    compiled = compiler.compile_work(work, processor)
    sources[f"simulated on {processor.name}"] = amdahl.group(
        {f"{lw.work.name}#{i}": (lw.work.kind, lw.result.cycles) for i, lw in enumerate(compiled.layers)})
    rows = amdahl.table(sources, faster)
    info = timing.machine_info()
    note = f"measured on {info['cpu']} ({info['cores']} cores), TF {info['tf_version']}; a shared machine"
    lines = [f"{name}: " + ", ".join(f"{k} {v:g}x faster" for k, v in faster.items()), timing.format_table(rows)]
    return AmdahlRun(name, faster, rows, note, lines)


def write_amdahl_run(run: AmdahlRun, *, logdir: str | Path, settings: dict[str, Any]) -> Written:
    """The speed-up table and where it was measured as a Text card, the report."""
    run_dir = paths.run_dir(logdir, "dlp")
    report = write_outputs("amdahl", run.rows, {"dlp/amdahl": markdown_rows(run.rows) + "\n\n" + run.note}, {},
                           {"model": run.name, "faster": run.faster}, run_dir, logdir=logdir, settings=settings)
    return Written(run_dir, report)
