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
5. writes TensorBoard runs under ``logs/0_vgg19/<timestamp>/`` (docs/tensorboard.md): the op graph
   named by block (variables stay variables), the graphs after grappler and as partitioned, with
   fused nodes named after what they fused (TensorBoard only shows the pre-optimisation graph of
   a trace, so we write those ourselves), the Keras conceptual graph, every printed table as a
   Text card, the three modes as HParams rows, every preprocessing stage as an image, and with
   ``--profile`` a profiler trace.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from tfbench.inspection.main_job import (
    RUN_FOLDER,
    layer_table,
    prepare_input,
    print_layer_table,
    run_modes,
    speedups,
    write_profile,
    write_tensorboard,
)
from tfbench.plumbing import cli, paths
from tfbench.plumbing.cli import check_input_file
from tfbench.plumbing.errors import run_cli


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
    parser.add_argument("--profile", action="store_true",
                        help="also record a profiler trace of a few calls per mode (TensorBoard's PROFILE tab; "
                             "needs tensorboard-plugin-profile)")
    cli.add_verbose(parser)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and validate arguments, output folder included, before any work; problems raise UserError."""
    args = cli.parse(build_parser(), argv)
    for flag, path in (("--weights", args.weights), ("--image", args.image)):
        if path is not None:
            check_input_file(path, flag)
    from tfbench.models import vgg19

    fixed, per_image = vgg19.forward_bytes(1)
    cli.check_memory(flag="--batch-size", value=args.batch, per_unit=per_image, fixed=fixed,
                        what=f"the batch of {vgg19.INPUT_SIZE}x{vgg19.INPUT_SIZE}x3 float32 images and VGG19's "
                             "weights and activations")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the main job and print where its TensorBoard logs went."""
    args = parse_args(argv)
    import tensorflow as tf  # noqa: F401  (imported after argument checks: bad flags fail fast)

    from tfbench import timing as harness
    from tfbench.data import labels
    from tfbench.data import weights as weight_files
    from tfbench.models import vgg19

    weights = (weight_files.load(args.weights, allow_pickle=args.allow_pickle) if args.weights
               else weight_files.random(args.seed))
    spec = weights.input_spec
    print(f"weights: {weights.source}; input: {spec.channel_order}, mean {tuple(round(m, 3) for m in spec.mean)}, "
          f"std {tuple(round(s, 3) for s in spec.std)}")
    prepared = prepare_input(args.image, spec, args.batch)
    print(f"image: {prepared.description}; batch {args.batch}")
    model = vgg19.VGG19Module(weights.layers)

    print("\nVGG19 layers for a (1, 224, 224, 3) input:")
    layers = layer_table(model, spec.size)
    print_layer_table(layers)

    outputs, timings = run_modes(model, prepared.batch, xla=not args.no_xla, bench=not args.no_bench,
                                 repeats=args.repeats)
    reference = outputs["eager"]
    diffs = {name: float(np.abs(out - reference).max()) for name, out in outputs.items()}
    print("\nlargest |difference| between outputs (logits):")
    for name, diff in diffs.items():
        if name != "eager":
            print(f"  eager vs {name}: {diff:.3g}")
    if timings:
        print(f"\nlatency, batch {args.batch} (median of {args.repeats} after 2 warm-ups):")
        harness.report("vgg", timings, speedups(timings), logdir=args.logdir)

    probabilities = tf.nn.softmax(reference).numpy()
    note = " (weights are random: these classes mean nothing)" if weights.is_random else ""
    print(f"\ntop-5 classes{note}:")
    top5 = labels.top_k(probabilities[:1], 5)[0]
    for index, name, p in top5:
        print(f"  {index:4d} {name:30s} {p:.4f}")

    run_dir = paths.run_dir(args.logdir, RUN_FOLDER)
    write_tensorboard(run_dir, model, weights, prepared, {
        "layers": layers, "diffs": diffs, "timings": timings, "top5": top5, "batch": args.batch,
        "repeats": args.repeats})
    if args.profile:
        print(f"profile: {write_profile(run_dir, model, prepared.batch, xla=not args.no_xla)} (PROFILE tab)")
    runs = "graph, optimized, partition, keras, results, hparams, images" + (", profile" if args.profile else "")
    print(f"\nTensorBoard logs: {run_dir} (runs: {runs})")
    print(f"view them with:\n  {cli.tensorboard_command(args.logdir)}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
