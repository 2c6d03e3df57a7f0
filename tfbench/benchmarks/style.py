"""Benchmark: style transfer's optimisation step and transform net, ``python -m tfbench.bench style``.

Timed side by side (round robin) in one process, after untimed warm-ups (tracing, XLA compiling):

- **the optimisation step** of ``python -m tfbench.style optimise`` (losses, gradient w.r.t. the
  pixels, Adam, clip) eagerly, as a ``tf.function`` and XLA-compiled, in float32 and, where the CPU
  has AVX512_BF16 or AMX_BF16, with VGG19 computing in bfloat16 (elsewhere the rows are skipped and
  the JSON says why);
- **the peer**: the same step with VGG19's features from ``keras.applications.VGG19(weights=None,
  include_top=False)`` holding the same weights, on the same picture; the goal is ours within
  1.1x of it (``ratios``: our time / the peer's time, so below 1.1);
- **the transform net's inference** with its instance norm four ways (TensorFlow ops, the
  PowerDifference C++ op, NumPy through ``tf.numpy_function``, the fused ``InstanceNorm`` C++ op),
  images/s and the largest difference;
- **the instance norm alone** at the transform net's shapes, forward and forward + backward: the fused
  op against TensorFlow's composite (goal: at least 1.5x), and PowerDifference against
  ``tf.pow(x - y, 2)`` on the same broadcast (goal: at least 1.0x); see :mod:`tfbench.benchmarks.norms`.

The VGG19 weights are seeded random: speed does not depend on the values.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfbench import timing
from tfbench.plumbing import cli


def keras_extractor(vgg: Any, size: int, **kwargs: Any) -> Any:
    """A :class:`~tfbench.models.style_losses.FeatureExtractor` with ``keras.applications.VGG19``'s features."""
    import keras

    from tfbench.models import style_losses as sl

    class KerasFeatureExtractor(sl.FeatureExtractor):
        """The same normalisation and layers; the convolutions are Keras' ``VGG19(include_top=False)``."""

        def __init__(self) -> None:
            super().__init__(vgg, **kwargs)
            reference = keras.applications.VGG19(weights=None, include_top=False, input_shape=(size, size, 3))
            for spec in vgg.specs:
                reference.get_layer(spec.keras_name).set_weights([vgg.kernels[spec.name].numpy(),
                                                                  vgg.biases[spec.name].numpy()])
            names = {spec.name: spec.keras_name for spec in vgg.specs}
            self.model = keras.Model(reference.input, {n: reference.get_layer(names[n]).output for n in self.wanted})

        def features(self, x: Any) -> dict[str, Any]:
            return self.model(x)

    return KerasFeatureExtractor()


def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """Parse the options, time every case round robin, write the JSON report."""
    parser = cli.parser("bench style", "Style transfer: the optimisation step (ours vs keras.applications, "
                        "eager / tf.function / XLA, float32 / bfloat16) and the transform net's four instance norms.")
    parser.add_argument("--image-size", type=cli.positive_int, default=128, help="picture size of the step")
    parser.add_argument("--infer-size", type=cli.positive_int, default=128, help="photo size of the transform net")
    cli.add_batch_size(parser, 4, help="photos per transform-net call")
    cli.add_repeats(parser, 5)
    parser.add_argument("--no-xla", action="store_true", help="skip the XLA variants")
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    args = cli.parse(parser, argv)
    if args.image_size < 16 or args.infer_size % 4:
        from tfbench.plumbing.errors import UserError

        raise UserError("--image-size must be at least 16 (conv5_1) and --infer-size a multiple of 4")
    import tensorflow as tf

    from tfbench import models
    from tfbench.data import images
    from tfbench.data import weights as weight_files
    from tfbench.models import style_losses as sl
    from tfbench.models import transform_net as tn
    from tfbench.style_transfer import optimise as st

    info = timing.print_header("style")
    weights = weight_files.random(0, include_top=False)
    spec = weights.input_spec
    norm = {"channel_order": spec.channel_order, "mean": spec.mean, "std": spec.std}
    content = st.square_image(images.skimage_photo("chelsea"), args.image_size)
    style = st.square_image(images.skimage_photo("immunohistochemistry"), args.image_size)
    modes = ["eager", "function"] + ([] if args.no_xla else ["xla"])
    bf16 = not info["bf16_note"].startswith("no bfloat16")
    extractors = {("ours", "float32"): sl.FeatureExtractor(
        models.get("vgg19", impl="module", weights=weights.layers, include_top=False), **norm)}
    extractors[("keras.applications", "float32")] = keras_extractor(extractors[("ours", "float32")].vgg,
                                                                    args.image_size, **norm)
    if bf16:
        extractors[("ours", "bfloat16")] = sl.FeatureExtractor(
            models.get("vgg19", impl="module", weights=weights.layers, include_top=False,
                       compute_dtype="bfloat16"), **norm)
    cases: dict[str, Any] = {}
    columns: dict[str, dict[str, Any]] = {}
    for (impl, dtype), extractor in extractors.items():
        target = sl.targets(extractor, tf.constant(content), tf.constant(style))
        for mode in modes:
            if impl != "ours" and mode == "eager":
                continue
            image = tf.Variable(content, name=f"picture_{impl}_{dtype}_{mode}".replace(".", "_"))
            name = f"step {impl} {dtype} {mode}"
            cases[name] = st.make_adam_step(extractor, target, sl.LossWeights(), st.adam(0.05), image, mode)
            columns[name] = {"part": "optimisation step", "impl": impl, "dtype": dtype, "mode": mode,
                             "image_size": args.image_size}
    print(f"optimisation step at {args.image_size}x{args.image_size}: {len(cases)} cases round robin "
          f"({args.repeats} rounds after 2 warm-ups; XLA compiles in the warm-ups)")
    rows: list[dict[str, Any]] = []
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # each case is its own tf.function of the same Python step: no retracing to warn about
    try:
        timings = timing.compare(cases, warmup=2, repeats=args.repeats)
    finally:
        logger.setLevel(level)
    for result in timings:
        rows.append({**result.row(), **columns[result.case]})
    skipped = [] if bf16 else [{"case": "step ours bfloat16", "skipped": info["bf16_note"]}]

    net = tn.build_transform_net(seed=0)
    photos = np.concatenate([st.square_image(images.skimage_photo(name), args.infer_size)
                             for name in ("chelsea", "astronaut", "coffee", "rocket")])
    batch = photos[np.arange(args.batch_size) % len(photos)]
    print(f"transform net at {args.infer_size}x{args.infer_size}, batch {args.batch_size}: four instance norms")
    for row in st.compare_norms(net, batch, repeats=args.repeats):
        rows.append({"case": f"transform net {row.pop('norm')}", **row, "repeats": args.repeats,
                     "part": "transform net", "batch": args.batch_size, "image_size": args.infer_size})

    from tfbench.benchmarks import norms as norm_bench

    print(f"instance norm alone at the net's shapes (batch {args.batch_size}, {args.infer_size}x{args.infer_size}): "
          "composite vs fused, PowerDifference vs tf.pow")
    norm_rows, norm_ratios = norm_bench.measure(args.batch_size, args.infer_size, repeats=args.repeats)
    rows += [{**row, "part": "instance norm"} for row in norm_rows]

    by_case = {r["case"]: r["median_ms"] for r in rows if r.get("part") != "instance norm"}
    p10 = {r["case"]: r["p10_ms"] for r in rows if r.get("part") != "instance norm"}
    ratios = {}
    for mode in modes[1:]:
        ours, peer = by_case[f"step ours float32 {mode}"], by_case[f"step keras.applications float32 {mode}"]
        ratios[f"ours / keras.applications, {mode}"] = ours / peer
        # the fast tail is what load from other processes disturbs least
        ratios[f"ours / keras.applications, {mode}, p10"] = (p10[f"step ours float32 {mode}"]
                                                             / p10[f"step keras.applications float32 {mode}"])
        if bf16:
            ratios[f"float32 / bfloat16, {mode}"] = ours / by_case[f"step ours bfloat16 {mode}"]
    ratios["eager / function"] = by_case["step ours float32 eager"] / by_case["step ours float32 function"]
    for norm in ("cpp", "numpy", "fused"):
        ratios[f"transform net {norm} / tf"] = by_case[f"transform net {norm}"] / by_case["transform net tf"]
    goal = {"goal": "ours within 1.1x of keras.applications (ratio <= 1.1)",
            "met": all(v <= 1.1 for k, v in ratios.items() if k.startswith("ours / keras") and "p10" not in k)}
    norm_goals = norm_bench.goals(norm_ratios)
    ratios.update(norm_ratios)
    return timing.report("style", rows, ratios, logdir=args.logdir,
                        extra={"skipped": skipped, "goal": goal, "norm_goals": norm_goals, "weights": weights.source,
                               "note": "measured side by side in one process; on a shared machine the spread "
                                       "(p10/p90) says how noisy the medians are"})
