"""The main job's steps (``python -m tfbench.vgg_graph``): the photo prepared with its channel order, VGG19's
layer table, the same batch run eagerly, as a ``tf.function`` and with XLA, and every TensorBoard run it
writes (graphs before and after grappler, text cards, HParams, input images, an optional profile).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


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

    from tfbench import timing as harness

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


#: The main job's folder under the log root.  TensorBoard lists runs in natural order with digits
#: and "_" before letters, so "0_vgg19/<timestamp>/graph" is the run the Graphs dashboard opens on.
RUN_FOLDER = "0_vgg19"


#: (run, tab, what you should see): the "what each run shows and where to click" card.
GUIDE = [
    ("graph", "GRAPHS (opens on it)",
     "`images -> vgg19 -> logits`; double-click `vgg19`: five blocks `block1 ... block5` and a `classifier`, "
     "connected in order; in a block, each conv box holds its `weights`, `biases` and `Conv2D -> BiasAdd -> Relu`"),
    ("optimized", "GRAPHS, Run `.../optimized`",
     "the graph after grappler: in each conv box one node `FusedConv2D+BiasAdd+Relu` (hover for the full name), "
     "in each fc box `FusedMatMul+BiasAdd(+Relu)`"),
    ("optimized", "TEXT", "op counts before/after grappler, and what each grappler pass changes"),
    ("partition", "GRAPHS, Run `.../partition`",
     "what the CPU runs: on oneDNN builds the kernels are `MklNativeFusedConv2D+BiasAdd+Relu`"),
    ("keras", "GRAPHS, Run `.../keras`, Tag `keras`, Graph type: Conceptual",
     "the Keras model's layers, with Keras names (`block1_conv1`, `fc1`, `predictions`: the layer table maps them)"),
    ("results", "TEXT", "the layer table (pool shapes, 143,667,240 parameters), latency and differences, top-5"),
    ("hparams/MODE", "HPARAMS", "eager, tf.function and XLA as rows of one sortable table"),
    ("images", "IMAGES", "the photo with the crop box, resized to 256, cropped to 224, and what the network reads"),
    ("profile", "PROFILE (with `--profile`)", "trace viewer: three steps each of eager, tf.function and XLA"),
]


def guide_markdown(run_dir: Path) -> str:
    """The "what each run shows and where to click" card."""
    from tfbench.reporting.summaries import markdown_table

    return (f"**What each run of this main job shows, and where to click** (runs are folders under `{run_dir}`)"
            "\n\n" + markdown_table(["run", "tab", "what you should see"], [(f"**{r}**", t, w) for r, t, w in GUIDE]))


def layer_markdown(rows: list[dict[str, Any]], keras_names: dict[str, str]) -> str:
    """The layer table (exercise 4.9) as markdown, with the Keras name beside the Caffe one."""
    from tfbench.reporting.summaries import markdown_table

    body = [(f"**{r['layer']}**" if r["layer"].startswith("pool") else r["layer"],
             keras_names.get(r["layer"], r["layer"].replace("pool", "block") + "_pool"
                             if r["layer"].startswith("pool") else ""),
             str(r["output shape"]), f"{r['params']:,}") for r in rows]
    body.append(("**total**", "", "", f"**{sum(r['params'] for r in rows):,}**"))
    return ("VGG19 for a (1, 224, 224, 3) input: every layer's output shape and parameter count "
            "(pools in bold: 112, 56, 28, 14, 7)\n\n" + markdown_table(["layer", "Keras name", "output shape",
                                                                          "params"], body))


def results_markdown(diffs: dict[str, float], timings: list, batch: int, repeats: int) -> str:
    """Latency (median ms) and the largest difference from eager, one row per mode."""
    from tfbench.reporting.summaries import markdown_table

    by_case = {t.case: t for t in timings}
    rows = []
    for mode, diff in diffs.items():
        t = by_case.get(mode)
        latency = f"{t.median_ms:.2f}" if t else "not timed (--no-bench)"
        speed = f"{by_case['eager'].median_ms / t.median_ms:.2f}x" if t and "eager" in by_case else ""
        rows.append((mode, latency, speed, "(reference)" if mode == "eager" else f"{diff:.3g}"))
    return (f"batch {batch}; median of {repeats} timed calls after 2 warm-ups, modes interleaved "
            "round robin; measured while this machine may be shared, so compare the ratios\n\n"
            + markdown_table(["mode", "median ms", "speedup over eager", "max abs difference from eager (logits)"],
                             rows))


def top5_markdown(top5: list[tuple[int, str, float]], random_weights: bool) -> str:
    """The five best classes, with the warning when the weights are random."""
    from tfbench.reporting.summaries import markdown_table

    warning = ("**The weights are random (seeded): these classes mean nothing.** Pass `--weights FILE` "
               "for real predictions.\n\n" if random_weights else "")
    return warning + markdown_table(["rank", "class index", "class", "probability"],
                                    [(i + 1, idx, name, f"{p:.4f}") for i, (idx, name, p) in enumerate(top5)])


def write_hparams(run_dir: Path, diffs: dict[str, float], timings: list, batch: int) -> None:
    """One HParams run per mode (eager, tf.function, XLA), so the comparison is one sortable table."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    mode = hp.HParam("mode", hp.Discrete(list(diffs)))
    batch_hp = hp.HParam("batch", hp.IntInterval(1, 1 << 16))
    metrics = [hp.Metric("latency_ms", display_name="median latency (ms)"),
               hp.Metric("speedup_over_eager", display_name="speedup over eager"),
               hp.Metric("max_abs_diff_vs_eager", display_name="max |difference| from eager")]
    with tf.summary.create_file_writer(str(run_dir / "hparams")).as_default():
        hp.hparams_config(hparams=[mode, batch_hp], metrics=metrics)
    by_case = {t.case: t.median_ms for t in timings}
    for name, diff in diffs.items():
        with tf.summary.create_file_writer(str(run_dir / "hparams" / name.replace("+", "_"))).as_default():
            hp.hparams({mode: name, batch_hp: batch}, trial_id=name)
            tf.summary.scalar("max_abs_diff_vs_eager", diff, step=0)
            if name in by_case:
                tf.summary.scalar("latency_ms", by_case[name], step=0)
                tf.summary.scalar("speedup_over_eager", by_case["eager"] / by_case[name], step=0)


def write_graphs(run_dir: Path, model, weights) -> str:
    """Traced op graph, post-grappler and partition graphs with readable names, Keras conceptual graph.

    Returns the markdown of what grappler changed (also written as the ``optimized`` run's Text card).
    """
    import tensorflow as tf

    from tfbench.models import vgg19
    from tfbench.reporting import graph_views, summaries
    from tfbench.rewriting import grappler

    x = tf.zeros([1, model.input_size, model.input_size, 3])
    concrete = model.as_function().get_concrete_function(x)
    summaries.write_graph(run_dir / "graph", graph_views.readable_traced_graph(concrete, ["logits"]))
    graphs = summaries.capture_function_graphs(model.as_function(), x)
    readable = graphs.readable(["logits"])
    for label, view in (("optimized", "post"), ("partition", "partition")):
        summaries.write_graph(run_dir / label, readable[view])
    changes = graph_views.grappler_changes(graphs.pre_optimization, graphs.post_optimization).markdown()
    small = vgg19.VGG19Module(seed=0, input_size=32, num_classes=10)  # the same ops, 50x cheaper to capture
    passes = grappler.ablate(small, tf.zeros([1, 32, 32, 3]), ["remapping", "constfold", "arithmetic", "pruning",
                                                                "dependency", "function", "shape", "meta"])
    ablation = summaries.markdown_table(
        ["pass turned off", "nodes", "nodes with all passes on", "change vs all on"],
        [(r["pass_off"], r["nodes"], r["nodes_all_on"], r["difference_vs_all_on"]) for r in passes])
    summaries.write_text(run_dir / "optimized", {
        "grappler/op_counts": "VGG19 forward, one `tf.function` call: op counts of the graph before and after "
                              "grappler (post-grappler node names say what was fused)\n\n" + changes,
        "grappler/passes": "What each grappler pass does here: the post-grappler graph with that one pass "
                           "off, compared with all passes on (the same VGG19 at 32x32: same ops; "
                           "`+Conv2D 16` with remapping off means remapping removes them)\n\n" + ablation,
    })
    summaries.write_keras_graph(run_dir / "keras", vgg19.build_keras_vgg19(weights.layers))
    return changes


def crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """Where the "A-aspect" crop (shorter side to 256, centre ``size``) lies in the original: top, left, h, w."""
    from tfbench.data import preprocess

    nh, nw = preprocess.shorter_side_size(height, width, preprocess.resize_size(size))
    ch, cw = size * height / nh, size * width / nw
    return int(round((height - ch) / 2)), int(round((width - cw) / 2)), int(round(ch)), int(round(cw))


def write_input_images(run_dir: Path, prepared: PreparedInput, spec) -> None:
    """Every stage of the recipe, each with a description: box on the photo, 256 resize, crop, network view."""
    import tensorflow as tf

    from tfbench.data import preprocess

    h, w = prepared.original.shape[:2]
    top, left, ch, cw = crop_box(h, w, spec.size)
    boxed = tf.image.draw_bounding_boxes(
        tf.constant(prepared.original[None], tf.float32) / 255.0,
        tf.constant([[[top / h, left / w, (top + ch) / h, (left + cw) / w]]], tf.float32),
        tf.constant([[1.0, 0.0, 0.0, 1.0]]))
    for t in range(1, max(2, min(h, w) // 150)):  # draw_bounding_boxes is 1 px wide: thicken it
        boxed = tf.image.draw_bounding_boxes(
            boxed, tf.constant([[[(top + t) / h, (left + t) / w, (top + ch - t) / h, (left + cw - t) / w]]],
                               tf.float32), tf.constant([[1.0, 0.0, 0.0, 1.0]]))
    nh, nw = preprocess.shorter_side_size(h, w, preprocess.resize_size(spec.size))
    resized = preprocess.resize(prepared.original, nh, nw)
    x = prepared.batch[0]
    mean = ", ".join(f"{m:.1f}" for m in spec.mean)
    std = ", ".join(f"{s:.1f}" for s in spec.std)
    raw_view = np.clip(x * np.asarray(spec.std, np.float32) / 2 + 128.0, 0, 255) / 255.0
    stages = [
        ("1_photo_with_crop_box", boxed.numpy()[0],
         f"{prepared.description}: {w}x{h} RGB as loaded. The red box is the {cw}x{ch} region that becomes the "
         f"{spec.size}x{spec.size} input (recipe: shorter side to {preprocess.resize_size(spec.size)}, centre crop)."),
        ("2_resized_shorter_side_256", resized,
         f"Step 1: shorter side resized to {preprocess.resize_size(spec.size)} (aspect kept): {nw}x{nh} RGB."),
        ("3_centre_crop_224", prepared.crop,
         f"Step 2: centre crop {spec.size}x{spec.size} RGB. Tick 'Show actual image size' to compare sizes."),
        (f"4_network_input_{spec.channel_order}_as_if_RGB", raw_view,
         f"Step 3, what the network reads: channels in {spec.channel_order} order, minus the mean ({mean}) "
         f"and divided by std ({std}). Shown as (value*std/2 + 128) with the channels drawn as if they were "
         f"RGB: {'the BGR swap turns the orange cat blue, ' if spec.channel_order == 'BGR' else ''}"
         "and the mean subtraction centres every channel on grey."),
        ("5_network_input_denormalised_RGB", preprocess.denormalise(x, spec, "RGB"),
         "Step 3 undone: x*std + mean, back to RGB: the crop again, which checks the normalisation round trip."),
    ]
    writer = tf.summary.create_file_writer(str(run_dir / "images"))
    with writer.as_default():
        for tag, image, description in stages:
            array = np.asarray(image)
            array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array
            tf.summary.image(tag, np.clip(array, 0, 1)[None], step=0, description=description)
    writer.close()


def write_profile(run_dir: Path, model, batch: np.ndarray, *, xla: bool, calls: int = 3) -> Path:
    """Profile ``calls`` calls of each mode (after a warm-up) into run ``profile`` (TensorBoard's PROFILE tab).

    Each call sits in a ``tf.profiler.experimental.Trace`` step named after its mode, so the trace
    viewer shows eager, tf.function and XLA steps one after the other on the same time line.
    """
    import tensorflow as tf

    x = tf.constant(batch)
    modes = {"eager": model.__call__, "tf.function": model.as_function()}
    if xla:
        modes["tf.function+XLA"] = model.as_function(jit_compile=True)
    for fn in modes.values():
        fn(x).numpy()  # tracing and compiling are not what the profile is for
    out = run_dir / "profile"
    tf.profiler.experimental.start(str(out))
    try:
        step = 0
        for name, fn in modes.items():
            for _ in range(calls):
                with tf.profiler.experimental.Trace(name, step_num=step, _r=1):
                    fn(x).numpy()
                step += 1
    finally:
        tf.profiler.experimental.stop()
    return out


def write_tensorboard(run_dir: Path, model, weights, prepared: PreparedInput, results: dict[str, Any]) -> None:
    """Graphs, Text cards of every printed table, HParams of the three modes, and the input images."""
    from tfbench.models import vgg19
    from tfbench.reporting import summaries

    write_graphs(run_dir, model, weights)
    summaries.write_text(run_dir / "results", {
        "0_guide/what_each_run_shows": guide_markdown(run_dir),
        "1_layers/vgg19_layer_table": layer_markdown(results["layers"], vgg19.keras_name_map()),
        "2_modes/latency_and_difference": results_markdown(results["diffs"], results["timings"],
                                                           results["batch"], results["repeats"]),
        "3_top5/classes": top5_markdown(results["top5"], weights.is_random),
    })
    write_hparams(run_dir, results["diffs"], results["timings"], results["batch"])
    write_input_images(run_dir, prepared, weights.input_spec)
