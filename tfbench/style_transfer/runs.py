"""The style-transfer lab's two runs, stage by stage: what ``python -m tfbench.style optimise`` and ``realtime`` do.

Each stage takes plain arguments or a settings dataclass and returns a dataclass of numbers and paths
(and, where a later stage needs it, the thing it built); the command prints what each stage found
before it calls the next, so a long run says what it is doing as it goes.  The stages write the run
folder ``<logdir>/style/<timestamp>/``: PNG files and the TensorBoard runs (Images, Scalars, Text,
Graphs, HParams).  The procedures themselves are in :mod:`.optimise`, the pictures in :mod:`.pictures`.

``optimise`` (Gatys):

- :func:`picture` and :func:`load_vgg`: the content and style pictures, VGG19's weights (a file or
  seeded random) and the feature extractor on them;
- :func:`pose` fixes the targets, the starting picture and the run folder (an :class:`Optimisation`);
- :func:`compare_modes` runs the same Adam step eagerly, as a ``tf.function`` and with XLA (HParams);
- :func:`optimise` optimises the pixels with Adam or L-BFGS and writes the pictures, scalars, cards and
  the step's graph (an :class:`Optimised`).

``realtime`` (Johnson):

- :func:`stylise_with_saved_net`: a saved transform net on one photo, nothing trained;
- :func:`train` trains the transform net with checkpoints and saves it (a :class:`Trained`);
- :func:`norm_photos` and :func:`compare_norms`: the trained net with its four instance norms on the
  same photos, timed, with the pictures, the cards and each norm's graph (a :class:`NormComparison`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfbench import models
from tfbench.data import images
from tfbench.data import weights as weight_files
from tfbench.models import style_losses as sl
from tfbench.models import transform_net as tn
from tfbench.plumbing import paths
from tfbench.reporting import summaries
from tfbench.reporting.tables import cell, markdown_rows
from tfbench.style_transfer import optimise as st
from tfbench.style_transfer.pictures import TRAINING_PHOTOS, load_net, load_picture, progress, save_png, weights_card

LOSS_TERMS = ("content", "style", "tv", "total")


# ----------------------------------------------------------------------------- what both runs share


@dataclass(frozen=True)
class Picture:
    """A picture of the lab: ``(1, size, size, 3)`` float32 in ``[0, 1]``, and where it came from."""

    pixels: np.ndarray
    source: str


def picture(path: Path | None, default: str, size: int) -> Picture:
    """The picture at ``path``, or scikit-image's photo ``default``, squared to ``size`` pixels."""
    return Picture(*load_picture(path, default, size))


@dataclass(frozen=True)
class VGG:
    """VGG19's weights (a :class:`~tfbench.data.weights.VGGWeights`) and the feature extractor built on them."""

    weights: weight_files.VGGWeights
    extractor: sl.FeatureExtractor


def load_vgg(path: Path | None, *, allow_pickle: bool = False, seed: int = 0,
             content_layer: str = sl.CONTENT_LAYER) -> VGG:
    """VGG19 without its top from a weight file (or seeded random weights) and its feature extractor."""
    if path:
        weights = weight_files.load(path, allow_pickle=allow_pickle, include_top=False)
    else:
        weights = weight_files.random(seed, include_top=False)
    vgg = models.get("vgg19", impl="module", weights=weights.layers, include_top=False)
    spec = weights.input_spec
    return VGG(weights, sl.FeatureExtractor(vgg, channel_order=spec.channel_order, mean=spec.mean, std=spec.std,
                                            content_layer=content_layer))


# ----------------------------------------------------------------------------- optimise (Gatys)


@dataclass(frozen=True)
class OptimiseSettings:
    """How ``optimise`` runs: loss weights, steps, method (``adam``, ``lbfgs``), mode, start, comparison, pictures."""

    loss_weights: sl.LossWeights
    steps: int = 100
    method: str = "adam"
    mode: str = "function"
    learning_rate: float = 0.05
    init: str = "content"  # or "noise": seeded uniform noise
    compare_steps: int = 3
    image_every: int = 10
    seed: int = 0
    show_progress: bool = True


@dataclass(frozen=True)
class Optimisation:
    """What :func:`pose` fixed: pictures, VGG19, targets, the starting picture, settings and the run folder."""

    content: Picture
    style: Picture
    vgg: VGG
    target: sl.Targets
    start: np.ndarray
    settings: OptimiseSettings
    run_dir: Path


def pose(content: Picture, style: Picture, vgg: VGG, settings: OptimiseSettings, logdir: Path) -> Optimisation:
    """The targets of the losses, the starting picture, and a fresh run folder ``<logdir>/style/<timestamp>``."""
    target = sl.targets(vgg.extractor, tf.constant(content.pixels), tf.constant(style.pixels))
    start = (content.pixels if settings.init == "content"
             else np.random.default_rng(settings.seed).random(content.pixels.shape, dtype=np.float32))
    return Optimisation(content, style, vgg, target, start, settings, paths.run_dir(logdir, "style"))


def compare_modes(job: Optimisation) -> list[dict[str, Any]]:
    """The same Adam step eagerly, as a ``tf.function`` and with XLA, round robin: one row per mode (HParams too)."""
    s = job.settings
    rows = st.compare_modes(job.vgg.extractor, job.target, job.start, steps=s.compare_steps,
                            weights=s.loss_weights, learning_rate=s.learning_rate)
    table = [{"mode": r["mode"], "first_call_s": r["first_call_s"], "median_ms": r["median_ms"],
              "total_loss": r["total_loss"], "max_abs_diff": r["max_abs_diff"]} for r in rows]
    summaries.write_hparams_runs(job.run_dir / "hparams", table, ["mode"],
                                 {"median_ms": "ms per step", "first_call_s": "first call (s)",
                                  "total_loss": "total loss", "max_abs_diff": "max |diff| vs eager"})
    return table


@dataclass(frozen=True)
class Optimised:
    """What :func:`optimise` did: steps, losses at the first step and at the end, time per step, files written."""

    steps_run: int
    first_total: float
    final: dict[str, float]  # the loss terms of the result: content, style, tv, total
    content_style: float  # the content photo's own style loss: the yardstick a result must get below
    median_ms: float
    picture: Path
    side_by_side: Path  # content | style | result
    run_dir: Path


def optimise(job: Optimisation, modes: list[dict[str, Any]] | None = None) -> Optimised:
    """Optimise the pixels; write ``result.png``, ``content_style_result.png`` and the TensorBoard runs.

    The run ``optimise`` gets the loss scalars at every step, the picture every ``image_every`` steps,
    content | style | result at the end and the Text cards (weights, losses, and the ``modes`` rows of
    :func:`compare_modes` when given); the run ``step_graph`` one step's loss and gradient.
    """
    s, extractor, lw, run_dir = job.settings, job.vgg.extractor, job.settings.loss_weights, job.run_dir
    writer = tf.summary.create_file_writer(str(run_dir / "optimise"))
    bar = progress(s.steps, f"{s.method} ({s.mode})", not s.show_progress)

    def on_step(step: int, terms: dict[str, float], image: Any) -> None:
        bar.update(1)
        bar.set_postfix(total=f"{terms['total']:.4g}")
        with writer.as_default(step=step):
            for name, value in terms.items():
                tf.summary.scalar(f"loss/{name}", value)
            if step % s.image_every == 0 or step == s.steps:
                tf.summary.image("picture", tf.convert_to_tensor(image), max_outputs=1)

    with writer.as_default(step=0):
        tf.summary.image("picture", tf.constant(job.start), max_outputs=1)
    run = st.run_lbfgs if s.method == "lbfgs" else st.run_adam
    options = {} if s.method == "lbfgs" else {"learning_rate": s.learning_rate}
    result = run(extractor, job.target, job.start, steps=s.steps, weights=lw, mode=s.mode, callback=on_step,
                 **options)
    bar.close()
    writer.close()

    content, style = job.content.pixels, job.style.pixels
    final = st.floats(sl.losses(extractor, tf.constant(result.image), job.target, lw))
    content_style = st.floats(sl.losses(extractor, tf.constant(content), job.target, lw))["style"]
    first = result.history[0]["total"] if result.history else final["total"]
    png = save_png(st.to_uint8(result.image), run_dir / "result.png")
    side = np.concatenate([st.to_uint8(content), st.to_uint8(style), st.to_uint8(result.image)], axis=1)
    side_png = save_png(side, run_dir / "content_style_result.png")
    summaries.write_images(run_dir / "optimise", {"content | style | result": side}, step=s.steps)
    summary = summaries.markdown_table(
        ["", *LOSS_TERMS],
        [["first step", *(cell(result.history[0][k]) if result.history else "" for k in LOSS_TERMS)],
         ["result", *(cell(final[k]) for k in LOSS_TERMS)],
         ["content photo (style loss)", "", cell(content_style), "", ""]])
    cards = {"1_weights": weights_card(job.vgg.weights, f"Content: {job.content.source}; style: {job.style.source}; "
                                      f"loss weights content {lw.content:g}, style {lw.style:g}, tv {lw.tv:g}."),
             "2_losses": summary}
    if modes:
        cards["3_eager_function_xla"] = markdown_rows(modes)
    summaries.write_text(run_dir / "optimise", cards)
    step_graph = st.make_value_and_grad(extractor, job.target, lw, "function")
    summaries.write_trace(run_dir / "step_graph", step_graph, tf.constant(job.start), name="style_step")
    return Optimised(len(result.history), first, final, content_style, float(np.median(result.step_ms or [0])),
                     png, side_png, run_dir)


# ----------------------------------------------------------------------------- realtime (Johnson)


@dataclass(frozen=True)
class Stylised:
    """A photo run through a saved transform net: the picture written and its run folder."""

    picture: Path
    run_dir: Path


def stylise_with_saved_net(net_path: Path, photo: Picture, logdir: Path) -> Stylised:
    """Load a saved transform net (``.keras`` or SavedModel), stylise ``photo``: ``stylised.png`` and Images."""
    net = load_net(net_path)  # before the run folder: a file that is no net leaves nothing behind
    out = st.to_uint8(st.stylise(net, photo.pixels))
    run_dir = paths.run_dir(logdir, "style")
    png = save_png(out, run_dir / "stylised.png")
    summaries.write_images(run_dir / "realtime", {"photo | stylised": np.concatenate(
        [st.to_uint8(photo.pixels), out], axis=1)})
    return Stylised(png, run_dir)


@dataclass(frozen=True)
class TrainingSettings:
    """How ``realtime`` trains the transform net: loss weights, crops, batch, steps, the net's size, checkpoints."""

    loss_weights: sl.LossWeights
    image_size: int = 64
    steps: int = 200
    batch_size: int = 4
    learning_rate: float = 1e-3
    width: int = 16
    residual_blocks: int = 3
    checkpoint_every: int = 50
    seed: int = 0
    show_progress: bool = True


@dataclass(frozen=True)
class Trained:
    """What :func:`train` did: the net, where it started, the losses, the checkpoints and the saved files."""

    net: Any  # the Keras transform net, for the norm comparison
    steps: int  # the step it trained to
    start_step: int
    steps_run: int
    first_total: float | None  # None when no step ran (the checkpoint was already at --steps)
    last_total: float | None
    median_ms: float | None
    checkpoints: Path
    keras_file: Path
    saved_model: Path
    run_dir: Path


def train(style: Picture, vgg: VGG, settings: TrainingSettings, logdir: Path,
          checkpoints: Path | None = None) -> Trained:
    """Train the transform net on the embedded photos against ``style``; save it as ``.keras`` and SavedModel.

    Checkpoints go to ``checkpoints`` (default ``<run>/checkpoints``) and a run pointed at one resumes
    from it; the run ``realtime`` gets the loss scalars of every step.
    """
    s = settings
    run_dir = paths.run_dir(logdir, "style")
    photos = [images.skimage_photo(name) for name in TRAINING_PHOTOS]
    net = tn.build_transform_net(width=s.width, residual_blocks=s.residual_blocks, seed=s.seed)
    checkpoints = checkpoints or run_dir / "checkpoints"
    writer = tf.summary.create_file_writer(str(run_dir / "realtime"))
    bar = progress(s.steps, "training", not s.show_progress)

    def on_step(step: int, terms: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(total=f"{terms['total']:.4g}")
        with writer.as_default(step=step):
            for name, value in terms.items():
                tf.summary.scalar(f"loss/{name}", value)

    training = st.train_transform_net(net, vgg.extractor, style.pixels, photos, steps=s.steps,
                                      batch_size=s.batch_size, size=s.image_size, weights=s.loss_weights,
                                      learning_rate=s.learning_rate, seed=s.seed, checkpoint_dir=checkpoints,
                                      checkpoint_every=s.checkpoint_every, callback=on_step)
    bar.update(training.start_step)
    bar.close()
    writer.close()
    keras_file = run_dir / "transform_net.keras"
    net.save(keras_file)
    net.export(str(run_dir / "saved_model"), verbose=False)
    history = training.history
    return Trained(net, s.steps, training.start_step, training.steps_run,
                   history[0]["total"] if history else None, history[-1]["total"] if history else None,
                   float(np.median(training.step_ms)) if history else None,
                   checkpoints, keras_file, run_dir / "saved_model", run_dir)


def norm_photos(photo: Picture, size: int) -> np.ndarray:
    """The photos of the norm comparison: ``photo`` and scikit-image's astronaut, ``size`` pixels square."""
    return np.concatenate([photo.pixels, load_picture(None, "astronaut", size)[0]])


@dataclass(frozen=True)
class NormComparison:
    """The trained net with each instance norm: one row per norm (times, images/s, difference), the picture."""

    rows: list[dict[str, Any]]
    picture: Path
    run_dir: Path


def compare_norms(trained: Trained, photos: np.ndarray, *, repeats: int, style: Picture, vgg: VGG) -> NormComparison:
    """Run the trained net with its four instance norms on ``photos``, round robin; write what it made.

    Writes ``photos_stylised.png``, ``stylised.png`` (the first photo), the run ``realtime``'s Images
    (photo | stylised, the style) and Text (the weights card, the norm table), ``graph_cpp``,
    ``graph_numpy`` and ``graph_fused`` (each norm's traced graph) and ``hparams/`` (the norms).
    """
    net, run_dir = trained.net, trained.run_dir
    rows = st.compare_norms(net, photos, repeats=repeats)
    outputs = st.stylise(net, photos)
    grid = np.concatenate([np.concatenate([st.to_uint8(p), st.to_uint8(o)], axis=1)
                           for p, o in zip(photos, outputs)])
    summaries.write_images(run_dir / "realtime", {"photo | stylised": grid, "style": st.to_uint8(style.pixels)},
                           step=trained.steps)
    save_png(grid, run_dir / "photos_stylised.png")
    png = save_png(st.to_uint8(outputs[:1]), run_dir / "stylised.png")
    fns = st.norm_functions(net)
    for norm in ("cpp", "numpy", "fused"):
        summaries.write_trace(run_dir / f"graph_{norm}", fns[norm], tf.constant(photos[:1]), name=f"transform_{norm}")
    summaries.write_text(run_dir / "realtime", {
        "1_weights": weights_card(vgg.weights, f"Style: {style.source}; {trained.steps_run} steps run now."),
        "2_instance_norms": markdown_rows(rows)})
    summaries.write_hparams_runs(run_dir / "hparams", rows, ["norm"],
                                 {"images_per_s": "images/s", "median_ms": "ms per batch",
                                  "max_abs_diff_vs_tf": "max |diff| vs tf"})
    return NormComparison(rows, png, run_dir)
