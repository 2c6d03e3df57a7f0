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

import numpy as np

from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli
from tfbench.style_transfer.pictures import (
    CONV_LAYERS,
    DEFAULT_CONTENT,
    DEFAULT_STYLE,
    DEFAULT_WEIGHTS,
    RANDOM_NOTE,
    TRAINING_PHOTOS,
    _fmt,
    load_net,
    load_picture,
    progress,
    save_png,
    weights_card,
)


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


def add_common(p: argparse.ArgumentParser, size: int, steps: int, style_weight: float = DEFAULT_WEIGHTS["style"]
               ) -> None:
    """Options both subcommands share: weights, image size, steps, loss weights, logdir, seed."""
    p.add_argument("--style", type=Path, help="style image (default: scikit-image's 'immunohistochemistry' slide)")
    p.add_argument("--weights", type=Path, help="VGG19 weights: .npz, Keras .h5 (no-top too), vgg19.npy or "
                   "MatConvNet .mat (default: seeded random weights)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow unpickling a vgg19.npy file (runs code from the file: only for files you trust)")
    p.add_argument("--image-size", type=image_size, default=size,
                   help="square picture size (at least 16 for conv5_1, a multiple of 4)")
    p.add_argument("--steps", type=cli.positive_int, default=steps, help="optimisation steps")
    p.add_argument("--content-weight", type=cli.positive_float, default=DEFAULT_WEIGHTS["content"],
                   help="weight of the content loss")
    p.add_argument("--style-weight", type=cli.positive_float, default=style_weight,
                   help="weight of the style loss")
    p.add_argument("--tv-weight", type=non_negative_float, default=DEFAULT_WEIGHTS["tv"],
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
    p.add_argument("--content-layer", choices=CONV_LAYERS, default="conv2_2",
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


def load_vgg(args: argparse.Namespace) -> tuple[Any, Any]:
    """The weights (a :class:`~tfbench.data.weights.VGGWeights`) and the feature extractor built on them."""
    from tfbench import models
    from tfbench.data import weights as weight_files
    from tfbench.models import style_losses as sl

    if args.weights:
        weights = weight_files.load(args.weights, allow_pickle=args.allow_pickle, include_top=False)
    else:
        weights = weight_files.random(args.seed, include_top=False)
    vgg = models.get("vgg19", impl="module", weights=weights.layers, include_top=False)
    spec = weights.input_spec
    print(f"VGG19 weights: {weights.source}; input {spec.channel_order}, mean "
          f"{tuple(round(m, 3) for m in spec.mean)}")
    if weights.is_random:
        print(f"note: {RANDOM_NOTE}")
    layer = getattr(args, "content_layer", sl.CONTENT_LAYER)
    return weights, sl.FeatureExtractor(vgg, channel_order=spec.channel_order, mean=spec.mean, std=spec.std,
                                        content_layer=layer)


def loss_weights(args: argparse.Namespace) -> Any:
    """The :class:`~tfbench.models.style_losses.LossWeights` the flags give."""
    from tfbench.models.style_losses import LossWeights

    return LossWeights(args.content_weight, args.style_weight, args.tv_weight)


def _optimise(args: argparse.Namespace) -> int:
    import tensorflow as tf

    from tfbench.models import style_losses as sl
    from tfbench.reporting import summaries
    from tfbench.style_transfer import optimise as st
    from tfbench.timing import format_table

    content, content_source = load_picture(args.content, DEFAULT_CONTENT, args.image_size)
    style, style_source = load_picture(args.style, DEFAULT_STYLE, args.image_size)
    print(f"content: {content_source}; style: {style_source}; {args.image_size}x{args.image_size} pixels")
    weights, extractor = load_vgg(args)
    lw = loss_weights(args)
    target = sl.targets(extractor, tf.constant(content), tf.constant(style))
    start = (content if args.init == "content"
             else np.random.default_rng(args.seed).random(content.shape, dtype=np.float32))
    run_dir = paths.run_dir(args.logdir, "style")

    modes_table = ""
    if args.compare_steps:
        print(f"\nthe same Adam step three ways ({1 + args.compare_steps} steps each from the same start, "
              "round robin):")
        rows = st.compare_modes(extractor, target, start, steps=args.compare_steps, weights=lw,
                                learning_rate=args.learning_rate)
        table = [{"mode": r["mode"], "first_call_s": r["first_call_s"], "median_ms": r["median_ms"],
                  "total_loss": r["total_loss"], "max_abs_diff": r["max_abs_diff"]} for r in rows]
        print(format_table(table))
        modes_table = summaries.markdown_table(list(table[0]), [[_fmt(v) for v in r.values()] for r in table])
        summaries.write_hparams_runs(run_dir / "hparams", table, ["mode"],
                                     {"median_ms": "ms per step", "first_call_s": "first call (s)",
                                      "total_loss": "total loss", "max_abs_diff": "max |diff| vs eager"})

    writer = tf.summary.create_file_writer(str(run_dir / "optimise"))
    bar = progress(args.steps, f"{args.method} ({args.mode})", args.no_progress)

    def on_step(step: int, terms: dict[str, float], image: Any) -> None:
        bar.update(1)
        bar.set_postfix(total=f"{terms['total']:.4g}")
        with writer.as_default(step=step):
            for name, value in terms.items():
                tf.summary.scalar(f"loss/{name}", value)
            if step % args.image_every == 0 or step == args.steps:
                tf.summary.image("picture", tf.convert_to_tensor(image), max_outputs=1)

    with writer.as_default(step=0):
        tf.summary.image("picture", tf.constant(start), max_outputs=1)
    run = st.run_lbfgs if args.method == "lbfgs" else st.run_adam
    options = {} if args.method == "lbfgs" else {"learning_rate": args.learning_rate}
    result = run(extractor, target, start, steps=args.steps, weights=lw, mode=args.mode, callback=on_step, **options)
    bar.close()
    writer.close()

    final = st.floats(sl.losses(extractor, tf.constant(result.image), target, lw))
    content_style = st.floats(sl.losses(extractor, tf.constant(content), target, lw))["style"]
    first = result.history[0]["total"] if result.history else final["total"]
    print(f"\n{args.method}, {len(result.history)} steps ({args.mode}): total loss {first:.4g} -> {final['total']:.4g}"
          f" (median {np.median(result.step_ms or [0]):.0f} ms/step)")
    print(f"style loss against the style image: content photo {content_style:.4g}, result {final['style']:.4g}")
    png = save_png(st.to_uint8(result.image), run_dir / "result.png")
    side = np.concatenate([st.to_uint8(content), st.to_uint8(style), st.to_uint8(result.image)], axis=1)
    save_png(side, run_dir / "content_style_result.png")
    summaries.write_images(run_dir / "optimise", {"content | style | result": side}, step=args.steps)
    summary = summaries.markdown_table(
        ["", "content", "style", "tv", "total"],
        [["first step", *(_fmt(result.history[0][k]) if result.history else "" for k in ("content", "style", "tv",
                                                                                           "total"))],
         ["result", *(_fmt(final[k]) for k in ("content", "style", "tv", "total"))],
         ["content photo (style loss)", "", _fmt(content_style), "", ""]])
    cards = {"1_weights": weights_card(weights, f"Content: {content_source}; style: {style_source}; "
                                       f"loss weights content {lw.content:g}, style {lw.style:g}, tv {lw.tv:g}."),
             "2_losses": summary}
    if modes_table:
        cards["3_eager_function_xla"] = modes_table
    summaries.write_text(run_dir / "optimise", cards)
    step_graph = st.make_value_and_grad(extractor, target, lw, "function")
    summaries.write_trace(run_dir / "step_graph", step_graph, tf.constant(start), name="style_step")
    print(f"picture: {png} (with content and style: {run_dir / 'content_style_result.png'})")
    print(f"TensorBoard: {cli.tensorboard_command(run_dir)}  (Images, Scalars, Text: optimise; Graphs: step_graph; "
          "HParams: the modes)")
    return 0


def _realtime(args: argparse.Namespace) -> int:
    import tensorflow as tf

    from tfbench.data import images
    from tfbench.models import transform_net as tn
    from tfbench.reporting import summaries
    from tfbench.style_transfer import optimise as st
    from tfbench.timing import format_table

    photo, photo_source = load_picture(args.image, DEFAULT_CONTENT, args.infer_size)
    if args.net is not None:
        net = load_net(args.net)
        out = st.to_uint8(st.stylise(net, photo))
        run_dir = paths.run_dir(args.logdir, "style")
        png = save_png(out, run_dir / "stylised.png")
        summaries.write_images(run_dir / "realtime", {"photo | stylised": np.concatenate(
            [st.to_uint8(photo), out], axis=1)})
        print(f"stylised {photo_source} with {args.net}: {png}")
        return 0

    style, style_source = load_picture(args.style, DEFAULT_STYLE, args.image_size)
    weights, extractor = load_vgg(args)
    run_dir = paths.run_dir(args.logdir, "style")
    photos = [images.skimage_photo(name) for name in TRAINING_PHOTOS]
    print(f"style: {style_source}; training on {len(photos)} embedded photos ({', '.join(TRAINING_PHOTOS)}), "
          f"random crops of {args.image_size}x{args.image_size}, flips; batch {args.batch_size}")
    net = tn.build_transform_net(width=args.width, residual_blocks=args.residual_blocks, seed=args.seed)
    checkpoints = args.checkpoints or run_dir / "checkpoints"
    writer = tf.summary.create_file_writer(str(run_dir / "realtime"))
    bar = progress(args.steps, "training", args.no_progress)

    def on_step(step: int, terms: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(total=f"{terms['total']:.4g}")
        with writer.as_default(step=step):
            for name, value in terms.items():
                tf.summary.scalar(f"loss/{name}", value)

    training = st.train_transform_net(net, extractor, style, photos, steps=args.steps, batch_size=args.batch_size,
                                      size=args.image_size, weights=loss_weights(args),
                                      learning_rate=args.learning_rate, seed=args.seed, checkpoint_dir=checkpoints,
                                      checkpoint_every=args.checkpoint_every, callback=on_step)
    bar.update(training.start_step)
    bar.close()
    writer.close()
    if training.start_step:
        print(f"resumed from step {training.start_step} in {checkpoints}")
    if training.history:
        print(f"trained steps {training.start_step + 1}-{args.steps}: total loss {training.history[0]['total']:.4g} "
              f"-> {training.history[-1]['total']:.4g} (median {np.median(training.step_ms):.0f} ms/step); "
              f"checkpoints: {checkpoints}")
    keras_path = run_dir / "transform_net.keras"
    net.save(keras_path)
    net.export(str(run_dir / "saved_model"), verbose=False)
    print(f"saved: {keras_path} and {run_dir / 'saved_model'} (SavedModel)")

    test = np.concatenate([photo, load_picture(None, "astronaut", args.infer_size)[0]])
    print(f"\ninstance norm four ways, {len(test)} photos of {args.infer_size}x{args.infer_size} "
          f"(median of {args.repeats} round-robin rounds):")
    rows = st.compare_norms(net, test, repeats=args.repeats)
    print(format_table(rows))
    outputs = st.stylise(net, test)
    grid = np.concatenate([np.concatenate([st.to_uint8(p), st.to_uint8(o)], axis=1) for p, o in zip(test, outputs)])
    summaries.write_images(run_dir / "realtime", {"photo | stylised": grid, "style": st.to_uint8(style)},
                           step=args.steps)
    save_png(grid, run_dir / "photos_stylised.png")
    png = save_png(st.to_uint8(outputs[:1]), run_dir / "stylised.png")
    fns = st.norm_functions(net)
    for norm in ("cpp", "numpy", "fused"):
        summaries.write_trace(run_dir / f"graph_{norm}", fns[norm], tf.constant(test[:1]), name=f"transform_{norm}")
    summaries.write_text(run_dir / "realtime", {
        "1_weights": weights_card(weights, f"Style: {style_source}; {training.steps_run} steps run now."),
        "2_instance_norms": summaries.markdown_table(list(rows[0]), [[_fmt(v) for v in r.values()] for r in rows])})
    summaries.write_hparams_runs(run_dir / "hparams", rows, ["norm"],
                                 {"images_per_s": "images/s", "median_ms": "ms per batch",
                                  "max_abs_diff_vs_tf": "max |diff| vs tf"})
    print(f"picture: {png}\nTensorBoard: {cli.tensorboard_command(run_dir)}  (Images, Scalars, Text: realtime; "
          "Graphs: graph_cpp shows "
          "the PowerDifference nodes, graph_numpy the PyFunc, graph_fused the InstanceNorm nodes; "
          "HParams: the norms)")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
