"""A roofline of this CPU, with real layers on it (course exercise 6.10; answers 5.11 with numbers).

``python -m tfbench.roofline`` measures this machine's ceilings and places layers under them:

- **peaks**: float32 and bfloat16 ``tf.matmul`` GFLOP/s (N x N, ``2 N^3`` FLOPs) and memory
  bandwidth from a large elementwise add (``c = a + b``: two arrays read, one written), timed
  in the same rounds as every group below (:class:`PeakProbe`); the roof drawn is the best of them;
- **layers**: every layer of VGG19, ResNet-50 and LeNet-5 (Keras models from
  :func:`tfbench.models.get`; ``--models`` also takes a ``.keras``/``.h5`` file or a factory,
  through :mod:`tfbench.models.load`), each timed alone in a ``tf.function`` on a random input of its
  input shape, all layers of a model round robin.  FLOPs are ``tfbench.complexity``'s
  multiplications + additions (:mod:`tfbench.models.counting`), bytes are the float32 bytes a
  layer must move at least once: its inputs, its output and its weights.  Arithmetic intensity
  (AI) = FLOPs / bytes; the roofline bound is ``min(peak FLOP/s, AI x bandwidth)``;
- **fusion blocks** (``tfbench.fusion``'s experiments): conv+bias+relu and dense+bias+relu with
  grappler's remapper off (three kernels, each re-reading the tensor) and on (one fused
  kernel), and the ten-op elementwise chain without and with XLA.  Fusion does not change the
  FLOPs, it removes bytes: the point moves right, towards the ridge;
- **whole forward passes**: VGG19 at batch 8 float32 (Keras model and ``VGG19Module``) and the
  Module in bfloat16, as a fraction of the matmul peak of their dtype.

The ridge point is ``peak FLOP/s / bandwidth``.  Layers left of it are memory-bound: their
time is bytes / bandwidth whatever the arithmetic, which is where fusion pays (exercise 5.11):
ReLU, pooling, BatchNorm, residual adds, bias adds, the fully connected layers at small batch.
Layers right of it (VGG's 3x3 convolutions) are compute-bound: fusing a bias and a ReLU into
them saves a few percent at most.

Output: a table, ``logs/roofline/<timestamp>/roofline.png`` and the same PNG in TensorBoard's
Images dashboard, the table as a Text card, and ``logs/bench/roofline-<timestamp>.json``.  The
default run is short (a couple of minutes on 2 cores); ``--full`` uses larger peaks problems and
more rounds.  Numbers from a shared machine are lower bounds of what it can do.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from tfbench.inspection.roofline import PeakProbe, Point, layer_points, plot
from tfbench.inspection.roofline_points import MODELS, fusion_points, markdown, model_points, summary_lines
from tfbench.plumbing import cli
from tfbench.plumbing.errors import UserError, run_cli


def build_parser(prog: str = "roofline") -> argparse.ArgumentParser:
    p = cli.parser(prog, __doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated: " + ", ".join(MODELS) + ", or any Keras model file or factory "
                        "(tfbench.models.load)")
    cli.add_model_source(p)
    p.add_argument("--image-size", type=cli.positive_int, default=224, help="input size of VGG19 and ResNet-50")
    cli.add_batch_size(p, 8)
    p.add_argument("--lenet-batch", type=cli.positive_int, default=64, help="LeNet-5 batch size")
    p.add_argument("--matmul-size", type=cli.positive_int, default=2048, help="N of the N x N peak matmuls")
    p.add_argument("--add-elements", type=cli.positive_int, default=1 << 25,
                   help="float32 elements of each array of the bandwidth add (3 arrays)")
    p.add_argument("--no-fusion", action="store_true", help="skip the fusion blocks")
    p.add_argument("--no-forward", action="store_true", help="skip the whole VGG19 forward passes")
    p.add_argument("--warmup", type=cli.non_negative_int, default=1, help="untimed rounds")
    cli.add_repeats(p, 3)
    p.add_argument("--full", action="store_true",
                   help="the long run: 4096 matmuls, 2^26-element add, 7 rounds (overrides those flags)")
    cli.add_logdir(p)
    cli.add_verbose(p)
    return p


def parse_args(argv: Sequence[str] | None, prog: str = "roofline") -> argparse.Namespace:
    ns = cli.parse(build_parser(prog), argv)
    ns.models = [m.strip() for m in ns.models.split(",") if m.strip()]
    from pathlib import Path

    from tfbench.models.load import looks_like_factory

    bad = [m for m in ns.models if m not in MODELS and not Path(m).exists() and not looks_like_factory(m)]
    if bad or not ns.models:
        raise UserError(f"--models: unknown {bad or ns.models}; choose from {', '.join(MODELS)}, or give a .keras/.h5 "
                        "file, a SavedModel folder or package.module:factory")
    if ns.image_size % 32:
        raise UserError(f"--image-size must be a multiple of 32 (VGG19's five pools), got {ns.image_size}")
    if ns.full:
        ns.matmul_size, ns.add_elements, ns.repeats = 4096, 1 << 26, 7
    return ns


def run(ns: argparse.Namespace) -> dict[str, Any]:
    """Measure peaks and points, print the table and summary, write PNG, TensorBoard cards and JSON."""
    from tfbench import models, timing
    from tfbench.plumbing import paths
    from tfbench.reporting import summaries

    info = timing.print_header("roofline")
    probe = PeakProbe(ns.matmul_size, ns.add_elements)
    points: list[Point] = []
    for name in ns.models:
        if name not in MODELS:  # the user's model, through the one loader
            from tfbench.models import load

            loaded = load.load(name, input_shape=load.parse_input_shape(ns.input_shape) if ns.input_shape else None,
                               allow_code=ns.allow_code)
            if loaded.keras_model is None:
                raise UserError(f"{name}: the roofline places Keras layers and this {loaded.source} has none; "
                                f"python -m tfbench.inspect {name} places the whole model")
            print(f"timing the layers of {loaded.name} (input {'x'.join(map(str, loaded.input_shape))}, batch "
                  f"{ns.batch_size}) and the peaks, round robin ...", flush=True)
            points += layer_points(loaded.name, loaded.keras_model, ns.batch_size, warmup=ns.warmup,
                                   repeats=ns.repeats, probe=probe)
            continue
        size = 32 if name == "lenet5" else ns.image_size
        batch = ns.lenet_batch if name == "lenet5" else ns.batch_size
        print(f"timing the layers of {name} ({size}x{size}, batch {batch}) and the peaks, round robin ...", flush=True)
        points += layer_points(name, models.get(name, input_size=size), batch, warmup=ns.warmup, repeats=ns.repeats,
                               probe=probe)
    if not ns.no_fusion:
        print("timing the fusion blocks and the peaks ...", flush=True)
        points += fusion_points(batch=ns.batch_size, warmup=ns.warmup, repeats=ns.repeats,
                                small=ns.image_size < 224, probe=probe)
    same_rounds: dict[str, float] = {}
    if not ns.no_forward:
        print(f"timing VGG19 forward passes ({ns.image_size}x{ns.image_size}, batch {ns.batch_size}) and the peaks ...",
              flush=True)
        forward, same_rounds = model_points(ns.image_size, ns.batch_size, warmup=ns.warmup, repeats=ns.repeats,
                                            probe=probe)
        points += forward
    peaks = probe.peaks()
    if same_rounds:
        peaks["same_rounds_as_forward"] = same_rounds
    print(f"best of {len(probe.samples)} groups: float32 matmul {peaks['float32_gflops']:.0f} GFLOP/s, bfloat16 "
          f"matmul {peaks['bfloat16_gflops']:.0f} GFLOP/s, add {peaks['bandwidth_gb_per_s']:.1f} GB/s", flush=True)
    own = {sample["group"]: sample for sample in probe.samples}
    rows = []
    for p in points:  # each point against the peaks of its own rounds; plotted scaled to the best rounds' load
        group = own.get("forward" if p.group == "model" else p.group, peaks)
        p.load_scale = peaks["float32_gflops"] / group["float32_gflops"]
        rows.append(p.row(group["float32_gflops"], group["bandwidth_gb_per_s"]))
    run_dir = paths.run_dir(ns.logdir, "roofline")
    title = (f"{info['cpu']} ({info['cores']} cores, oneDNN {'on' if info['onednn'] else 'off'}), "
             f"TF {info['tf_version']}; shared machine, short run")
    png = plot(points, peaks, run_dir / "roofline.png", title)
    import matplotlib.image

    image = (matplotlib.image.imread(png)[..., :3] * 255).round().astype("uint8")
    summaries.write_images(run_dir, {"roofline": image})
    lines = summary_lines(rows, peaks)
    table = markdown(rows, peaks)
    summaries.write_text(run_dir, {"roofline/table": table, "roofline/summary": "\n\n".join(lines)})
    extra = {"peaks": peaks, "png": str(png), "run_dir": str(run_dir), "summary": lines,
             "settings": {k: v for k, v in vars(ns).items() if k not in ("verbose",)}}
    report = timing.report("roofline", rows, {}, logdir=ns.logdir, extra=extra, quiet=True)
    print(timing.format_table([{k: r[k] for k in ("group", "name", "kind", "intensity", "median_ms", "gflops",
                                                 "of_bound", "memory_bound")} for r in rows]))
    for line in lines:
        print(line)
    print(f"PNG: {png}\nTensorBoard: {cli.tensorboard_command(run_dir)}\nreport: {report['path']}")
    return report


def run_benchmark(argv: Sequence[str] | None = None, prog: str = "bench roofline") -> dict[str, Any]:
    """``python -m tfbench.bench roofline``: same as the command (``prog`` names which in ``--help``)."""
    return run(parse_args(argv, prog))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    run_benchmark(argv, prog="roofline")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
