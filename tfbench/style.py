"""Neural style transfer, the course lab: by optimising the pixels (exercise 3.9) and in real time.

    python -m tfbench.style optimise                       # chelsea the cat in the style of a stained slide
    python -m tfbench.style optimise --weights imagenet-vgg-verydeep-19.mat --content me.jpg --style starry.jpg
    python -m tfbench.style realtime                       # train a transform net, compare its instance norms
    python -m tfbench.style realtime --net logs/style/<run>/transform_net.keras --image photo.jpg
    tensorboard --logdir logs

``optimise`` (Gatys et al.): gradient descent on the picture's pixels against the losses of
:mod:`tfbench.models.style_losses` (content at conv4_2, Gram matrices at conv1_1 ... conv5_1, total
variation), with Adam or SciPy's L-BFGS; first the same step eagerly, as a ``tf.function`` and with
XLA, side by side.  ``realtime`` (Johnson et al.): trains the transform net of
:mod:`tfbench.models.transform_net` on augmented embedded photos, with checkpoints (run again with
``--checkpoints DIR`` to resume), saves it as a SavedModel and a ``.keras`` file, and runs it with its
instance norm computed four ways (TensorFlow ops, the PowerDifference C++ op, NumPy, the fused InstanceNorm op).

VGG19's weights are seeded random unless ``--weights`` gives a file (as for the main job:
``.npz``, Keras ``.h5`` with or without top, ``vgg19.npy`` with ``--allow-pickle``, MatConvNet
``.mat``).  Random filters are not trained features: the run says so, and what it does to the picture.
Runs go to ``logs/style/<timestamp>/`` (Images, Scalars, Text, Graphs); the pictures also as PNG files there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from tfbench.plumbing import cli
from tfbench.plumbing.errors import UserError, run_cli
from tfbench.style_transfer import pictures


def image_size(text: str) -> int:
    """argparse type: a square size VGG19 reaches conv5_1 with (at least 16) that the transform net halves twice."""
    value = cli.positive_int(text)
    if value < 16:
        raise argparse.ArgumentTypeError(f"{value} is too small for conv5_1: it comes after four 2x2 pools, "
                                         "so the picture needs at least 16x16 pixels")
    if value % 4:
        raise argparse.ArgumentTypeError(f"must be a multiple of 4 (the transform net halves it twice), got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a number of at least 0."""
    return 0.0 if text.strip() in ("0", "0.0") else cli.positive_float(text)


def add_common(p: argparse.ArgumentParser, size: int, steps: int,
               style_weight: float = pictures.DEFAULT_WEIGHTS["style"]) -> None:
    """Options both subcommands share: weights, image size, steps, loss weights, logdir, seed."""
    p.add_argument("--style", type=Path, help="style image (default: scikit-image's 'immunohistochemistry' slide)")
    p.add_argument("--weights", type=Path, help="VGG19 weights: .npz, Keras .h5 (no-top too), vgg19.npy or "
                   "MatConvNet .mat (default: seeded random weights)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow unpickling a vgg19.npy file (runs code from the file: only for files you trust)")
    p.add_argument("--image-size", type=image_size, default=size,
                   help="square picture size (at least 16 for conv5_1, a multiple of 4)")
    p.add_argument("--steps", type=cli.positive_int, default=steps, help="optimisation steps")
    p.add_argument("--content-weight", type=cli.positive_float, default=pictures.DEFAULT_WEIGHTS["content"],
                   help="weight of the content loss")
    p.add_argument("--style-weight", type=cli.positive_float, default=style_weight,
                   help="weight of the style loss")
    p.add_argument("--tv-weight", type=non_negative_float, default=pictures.DEFAULT_WEIGHTS["tv"],
                   help="weight of the total-variation loss (0: none)")
    cli.add_logdir(p, help="runs go to LOGDIR/style/<timestamp>/")
    cli.add_seed(p, help="seed of the random VGG19 weights (and of the transform net)")
    cli.add_progress(p)
    cli.add_verbose(p)


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``optimise`` and ``realtime``."""
    parser = cli.parser("style", __doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("optimise", help="optimise the pixels (Gatys, exercise 3.9)", formatter_class=cli.HelpFormatter)
    p.add_argument("--content", type=Path, help="content photo (default: scikit-image's cat 'chelsea')")
    add_common(p, size=128, steps=100)
    p.add_argument("--method", choices=("adam", "lbfgs"), default="adam",
                   help="Adam (Keras) or L-BFGS-B (SciPy, pixels bounded to [0, 1])")
    p.add_argument("--mode", choices=("eager", "function", "xla"), default="function",
                   help="how the step runs in the optimisation itself")
    p.add_argument("--learning-rate", type=cli.positive_float, default=0.05, help="Adam's learning rate")
    p.add_argument("--init", choices=("content", "noise"), default="content",
                   help="start from the content photo or from seeded uniform noise")
    p.add_argument("--compare-steps", type=cli.non_negative_int, default=3,
                   help="timed steps per mode in the eager / tf.function / XLA comparison (0: skip it)")
    p.add_argument("--image-every", type=cli.positive_int, default=10, help="picture to TensorBoard every N steps")
    p.set_defaults(run=_optimise)
    p = sub.add_parser("realtime", help="train a transform net (Johnson) and compare its instance norms",
                       formatter_class=cli.HelpFormatter)
    add_common(p, size=64, steps=200, style_weight=10.0)  # the net must learn to keep the content first
    cli.add_batch_size(p, 4, help="training photos per step")
    p.add_argument("--learning-rate", type=cli.positive_float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--content-layer", choices=pictures.CONV_LAYERS, default="conv2_2",
                   help="VGG19 layer of the content loss (Johnson et al. use relu2_2; optimise uses conv4_2)")
    p.add_argument("--width", type=cli.positive_int, default=16, help="channels after the first convolution")
    p.add_argument("--residual-blocks", type=cli.positive_int, default=3, help="residual blocks")
    p.add_argument("--checkpoints", type=Path, help="checkpoint folder; a run pointed at one resumes from it "
                   "(default: <run>/checkpoints)")
    p.add_argument("--checkpoint-every", type=cli.positive_int, default=50, help="steps between checkpoints")
    p.add_argument("--net", type=Path, help="a saved transform net (.keras file or SavedModel folder): skip training")
    p.add_argument("--image", type=Path, help="photo to stylise (default: the content photo 'chelsea')")
    p.add_argument("--infer-size", type=image_size, default=128, help="size of the photos in the norm comparison")
    cli.add_repeats(p, 5, help="timed rounds of the norm comparison (after 1 warm-up)")
    p.set_defaults(run=_realtime)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, check every input file before any work, and run the subcommand."""
    args = cli.parse(build_parser(), argv)
    from tfbench.data import images  # no TensorFlow yet: a bad photo is refused at once

    for flag in ("content", "style", "weights", "image"):
        if getattr(args, flag, None) is not None:
            cli.check_input_file(getattr(args, flag), f"--{flag}")
            if flag != "weights":
                images.load_pil(getattr(args, flag))
    if getattr(args, "net", None) is not None and not args.net.exists():
        raise UserError(f"--net {args.net}: no such file or folder")
    return args.run(args)


def print_weights(vgg: Any) -> None:
    """Where VGG19's weights came from and the input they expect; the note when they are random."""
    spec = vgg.weights.input_spec
    print(f"VGG19 weights: {vgg.weights.source}; input {spec.channel_order}, mean "
          f"{tuple(round(m, 3) for m in spec.mean)}")
    if vgg.weights.is_random:
        print(f"note: {pictures.RANDOM_NOTE}")


def _optimise(args: argparse.Namespace) -> int:
    from tfbench.models.style_losses import LossWeights
    from tfbench.style_transfer import runs
    from tfbench.timing import format_table

    content = runs.picture(args.content, pictures.DEFAULT_CONTENT, args.image_size)
    style = runs.picture(args.style, pictures.DEFAULT_STYLE, args.image_size)
    print(f"content: {content.source}; style: {style.source}; {args.image_size}x{args.image_size} pixels")
    vgg = runs.load_vgg(args.weights, allow_pickle=args.allow_pickle, seed=args.seed)
    print_weights(vgg)
    settings = runs.OptimiseSettings(
        LossWeights(args.content_weight, args.style_weight, args.tv_weight), steps=args.steps, method=args.method,
        mode=args.mode, learning_rate=args.learning_rate, init=args.init, compare_steps=args.compare_steps,
        image_every=args.image_every, seed=args.seed, show_progress=not args.no_progress)
    job = runs.pose(content, style, vgg, settings, args.logdir)
    modes = None
    if args.compare_steps:
        print(f"\nthe same Adam step three ways ({1 + args.compare_steps} steps each from the same start, "
              "round robin):")
        modes = runs.compare_modes(job)
        print(format_table(modes))
    done = runs.optimise(job, modes)
    print(f"\n{args.method}, {done.steps_run} steps ({args.mode}): total loss {done.first_total:.4g} -> "
          f"{done.final['total']:.4g} (median {done.median_ms:.0f} ms/step)")
    print(f"style loss against the style image: content photo {done.content_style:.4g}, "
          f"result {done.final['style']:.4g}")
    print(f"picture: {done.picture} (with content and style: {done.side_by_side})")
    print(f"TensorBoard: {cli.tensorboard_command(done.run_dir)}  (Images, Scalars, Text: optimise; "
          "Graphs: step_graph; HParams: the modes)")
    return 0


def _realtime(args: argparse.Namespace) -> int:
    from tfbench.models.style_losses import LossWeights
    from tfbench.style_transfer import runs
    from tfbench.timing import format_table

    photo = runs.picture(args.image, pictures.DEFAULT_CONTENT, args.infer_size)
    if args.net is not None:
        stylised = runs.stylise_with_saved_net(args.net, photo, args.logdir)
        print(f"stylised {photo.source} with {args.net}: {stylised.picture}")
        return 0
    style = runs.picture(args.style, pictures.DEFAULT_STYLE, args.image_size)
    vgg = runs.load_vgg(args.weights, allow_pickle=args.allow_pickle, seed=args.seed,
                        content_layer=args.content_layer)
    print_weights(vgg)
    names = pictures.TRAINING_PHOTOS
    print(f"style: {style.source}; training on {len(names)} embedded photos ({', '.join(names)}), "
          f"random crops of {args.image_size}x{args.image_size}, flips; batch {args.batch_size}")
    settings = runs.TrainingSettings(
        LossWeights(args.content_weight, args.style_weight, args.tv_weight), image_size=args.image_size,
        steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate, width=args.width,
        residual_blocks=args.residual_blocks, checkpoint_every=args.checkpoint_every, seed=args.seed,
        show_progress=not args.no_progress)
    trained = runs.train(style, vgg, settings, args.logdir, checkpoints=args.checkpoints)
    if trained.start_step:
        print(f"resumed from step {trained.start_step} in {trained.checkpoints}")
    if trained.steps_run:
        print(f"trained steps {trained.start_step + 1}-{args.steps}: total loss {trained.first_total:.4g} "
              f"-> {trained.last_total:.4g} (median {trained.median_ms:.0f} ms/step); "
              f"checkpoints: {trained.checkpoints}")
    print(f"saved: {trained.keras_file} and {trained.saved_model} (SavedModel)")

    photos = runs.norm_photos(photo, args.infer_size)
    print(f"\ninstance norm four ways, {len(photos)} photos of {args.infer_size}x{args.infer_size} "
          f"(median of {args.repeats} round-robin rounds):")
    norms = runs.compare_norms(trained, photos, repeats=args.repeats, style=style, vgg=vgg)
    print(format_table(norms.rows))
    print(f"picture: {norms.picture}\nTensorBoard: {cli.tensorboard_command(norms.run_dir)}  (Images, Scalars, "
          "Text: realtime; Graphs: graph_cpp shows the PowerDifference nodes, graph_numpy the PyFunc, graph_fused "
          "the InstanceNorm nodes; HParams: the norms)")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
