"""The main job: VGG19 run eagerly, as a ``tf.function`` graph and with XLA, and shown in TensorBoard.

    python -m tfbench.vgg_graph                 # embedded cat photo, seeded random weights
    python -m tfbench.vgg_graph --weights vgg19_weights_tf_dim_ordering_tf_kernels.h5 --image dog.jpg
    tensorboard --logdir logs

What it does, in order (course exercises 4.4, 4.9, 5.1, 5.2):

1. opens the weight file once (``tfbench.data.weights``) and builds :class:`~tfbench.models.vgg19.VGG19Module`;
2. prints every layer's output shape and parameter count for a (1, 224, 224, 3) input;
3. runs the same batch eagerly, through ``tf.function`` and through XLA, and prints the
   median latency after warm-up, the speedups, and the largest difference between outputs;
4. prints the top-5 ImageNet classes (and says so when the weights are random);
5. writes a TensorBoard run: the traced op graph (variables stay variables), the Keras
   conceptual graph, the graph after grappler (TensorBoard only shows the pre-optimisation
   graph of a trace, so we write that one ourselves), and the image before/after preprocessing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfbench import cli, paths
from tfbench.cli import check_input_file
from tfbench.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    """The command line of the main job."""
    parser = cli.parser("vgg_graph", "VGG19 eager vs tf.function vs XLA, top-5 classes, and TensorBoard graphs.")
    parser.add_argument("--weights", type=Path, help="VGG19 weights: .npz, Keras .h5, vgg19.npy or MatConvNet .mat "
                        "(default: seeded random weights)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow unpickling a vgg19.npy file (runs code from the file: only for files you trust)")
    parser.add_argument("--image", type=Path, help="image file (default: scikit-image's bundled cat photo 'chelsea')")
    cli.add_batch_size(parser, 1, help="batch size: the image repeated N times", dest="batch")
    cli.add_logdir(parser, help="TensorBoard log root")
    cli.add_repeats(parser, 5, help="timed runs per mode (after 2 warm-ups)")
    cli.add_seed(parser, help="seed of the random weights")
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA (jit_compile=True) variant")
    parser.add_argument("--no-bench", action="store_true", help="run each mode once, without timing")
    cli.add_verbose(parser)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and validate arguments, output folder included, before any work; problems raise UserError."""
    args = build_parser().parse_args(argv)
    for flag, path in (("--weights", args.weights), ("--image", args.image)):
        if path is not None:
            check_input_file(path, flag)
    cli.check_output_dir(args.logdir)
    return args


# --- input --------------------------------------------------------------------------------------

@dataclass
class PreparedInput:
    """The photo as loaded, the 224x224 crop, and the normalised batch the network gets."""

    original: np.ndarray  # uint8 HxWx3 RGB, for display
    crop: np.ndarray  # uint8 224x224x3 RGB, for display
    batch: np.ndarray  # float32 (N, 224, 224, 3), normalised as the weights expect
    description: str


def prepare_input(image_path: Path | None, spec, batch: int) -> PreparedInput:
    """Load the image (its channel order travels with it), crop ImageNet-style, normalise for ``spec``."""
    from tfbench.data import images, preprocess

    if image_path is None:
        image = images.from_array(images.skimage_photo("chelsea"), "RGB",
                                  source="scikit-image's bundled photo 'chelsea' (a tabby cat)")
    else:
        image = images.load_image(image_path)
    crop = preprocess.apply_recipe(image, "A-aspect", size=spec.size)  # shorter side 256, centre 224
    normalised = preprocess.normalise(crop, spec)
    return PreparedInput(
        original=image.rgb(),
        crop=crop.rgb(),
        batch=np.repeat(normalised[None], batch, axis=0),
        description=image.source,
    )


# --- the three ways to run ------------------------------------------------------------------------

def layer_table(model, input_size: int) -> list[dict[str, Any]]:
    """Each layer's output shape for one (1, S, S, 3) input and its parameter count (exercise 4.9)."""
    import tensorflow as tf

    params = {s.name: s.params for s in model.specs}
    rows = []
    for name, output in model.layers(tf.zeros([1, input_size, input_size, 3])):
        rows.append({"layer": name, "output shape": tuple(output.shape), "params": params.get(name, 0)})
    return rows


def print_layer_table(rows: list[dict[str, Any]]) -> None:
    """Print the layer table with a total line."""
    print(f"{'layer':8s} {'output shape':>20s} {'params':>12s}")
    for row in rows:
        print(f"{row['layer']:8s} {str(row['output shape']):>20s} {row['params']:>12,d}")
    print(f"{'total':8s} {'':>20s} {sum(r['params'] for r in rows):>12,d}")


def run_modes(model, batch: np.ndarray, *, xla: bool, bench: bool, repeats: int) -> tuple[dict, list]:
    """Run the batch eagerly, as a tf.function and (optionally) with XLA; return outputs and timings."""
    import tensorflow as tf

    from tfbench import bench as harness

    x = tf.constant(batch)
    modes = {"eager": model.__call__, "tf.function": model.as_function()}
    if xla:
        modes["tf.function+XLA"] = model.as_function(jit_compile=True)
    outputs = {name: fn(x).numpy() for name, fn in modes.items()}  # first calls trace/compile: never timed
    timings = []
    if bench:
        timings = harness.compare({name: lambda fn=fn: fn(x) for name, fn in modes.items()},
                                  warmup=2, repeats=repeats, batch=int(batch.shape[0]))
    return outputs, timings


def speedups(timings: list, suffix: str = "") -> dict[str, float]:
    """Eager median over each graph mode's median (ratio names end with ``suffix``)."""
    by_case = {t.case: t.median_ms for t in timings}
    return {f"{case} speedup over eager{suffix}": by_case["eager"] / ms for case, ms in by_case.items()
            if case != "eager"}


# --- TensorBoard ------------------------------------------------------------------------------------

def write_tensorboard(run_dir: Path, model, weights, prepared: PreparedInput) -> None:
    """Op graph of the tf.function, Keras conceptual graph, post-grappler graph, input images."""
    import tensorflow as tf

    from tfbench import summaries
    from tfbench.models import vgg19

    x = tf.constant(prepared.batch[:1])
    summaries.write_trace(run_dir / "graph", model.as_function(), x, name="vgg19_forward")
    summaries.write_graph(run_dir / "optimized",
                          summaries.capture_function_graphs(model.as_function(), x).post_optimization)
    summaries.write_keras_graph(run_dir / "keras", vgg19.build_keras_vgg19(weights.layers))
    spec = weights.input_spec
    network_view = prepared.batch[0]
    network_view = (network_view - network_view.min()) / max(float(np.ptp(network_view)), 1e-6)
    summaries.write_images(run_dir / "images", {
        "1_input_as_loaded": prepared.original,
        "2_after_crop": prepared.crop,
        f"3_as_the_network_sees_it_{spec.channel_order}_minmax_scaled": network_view,
    })


# --- main -----------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the main job and print where its TensorBoard logs went."""
    args = parse_args(argv)
    cli.quiet_tensorflow(args.verbose)
    import tensorflow as tf  # noqa: F401  (imported after argument checks: bad flags fail fast)

    from tfbench import bench as harness
    from tfbench.data import labels
    from tfbench.models import vgg19
    from tfbench.data import weights as weight_files

    weights = (weight_files.load(args.weights, allow_pickle=args.allow_pickle) if args.weights
               else weight_files.random(args.seed))
    spec = weights.input_spec
    print(f"weights: {weights.source}; input: {spec.channel_order}, mean {tuple(round(m, 3) for m in spec.mean)}, "
          f"std {tuple(round(s, 3) for s in spec.std)}")
    prepared = prepare_input(args.image, spec, args.batch)
    print(f"image: {prepared.description}; batch {args.batch}")
    model = vgg19.VGG19Module(weights.layers)

    print("\nVGG19 layers for a (1, 224, 224, 3) input:")
    print_layer_table(layer_table(model, spec.size))

    outputs, timings = run_modes(model, prepared.batch, xla=not args.no_xla, bench=not args.no_bench,
                                 repeats=args.repeats)
    reference = outputs["eager"]
    print("\nlargest |difference| between outputs (logits):")
    for name, out in outputs.items():
        if name != "eager":
            print(f"  eager vs {name}: {np.abs(out - reference).max():.3g}")
    if timings:
        print(f"\nlatency, batch {args.batch} (median of {args.repeats} after 2 warm-ups):")
        harness.report("vgg", timings, speedups(timings), logdir=args.logdir)

    probabilities = tf.nn.softmax(reference).numpy()
    note = " (weights are random: these classes mean nothing)" if weights.is_random else ""
    print(f"\ntop-5 classes{note}:")
    for index, name, p in labels.top_k(probabilities[:1], 5)[0]:
        print(f"  {index:4d} {name:30s} {p:.4f}")

    run_dir = paths.run_dir(args.logdir, "vgg19")
    write_tensorboard(run_dir, model, weights, prepared)
    print(f"\nTensorBoard logs: {run_dir} (runs: graph, optimized, keras, images)")
    print(f"view them with:\n  tensorboard --logdir {args.logdir}")
    return 0


def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """``python -m tfbench.bench vgg``: eager vs tf.function vs XLA latency at a few batch sizes."""
    parser = cli.parser("bench vgg", "VGG19 forward: eager vs tf.function vs XLA at a few batch sizes.")
    parser.add_argument("--batch-sizes", dest="batches", type=cli.positive_int, nargs="+", default=[1, 4],
                        help="batch sizes to time")
    cli.add_repeats(parser, 5)
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA variant")
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    args = parser.parse_args(argv)
    cli.quiet_tensorflow(args.verbose)
    cli.check_output_dir(args.logdir)
    from tfbench import bench as harness
    from tfbench import models
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


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
