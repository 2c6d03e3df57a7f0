"""Benchmark: how fast can the TFRecord pipeline feed VGG19?  ``python -m tfbench.bench pipeline``.

Course exercise 4.7, measured.  Three ways to turn ImageNet-style JPEGs into normalised
224x224 batches, timed side by side (round robin) in one run on the same images:

- (a) **decode only**: the JPEG bytes already in memory, decoded by ``tf.data`` in parallel and
  thrown away: the practical limit, since every other step needs the pixels; (a1) decoding only
  the recipe's crop window, which is what (b) decodes; and (a2) the same plus the resize, which
  separates the cost of resizing from the rest of the pipeline;
- (b) **the full pipeline** (:func:`tfbench.data.reader.make_dataset`): read the shards, batch the
  records, then per batch parse and, in one C++ op (:mod:`tfbench.data.resize_normalise`, where it
  builds), decode only each crop window, resize + round + normalise into the batch; prefetch.
  Beside it, the same pipeline with one thing changed each: each batch decoded on one thread, one
  map call per image and then a batch (the fused resize op after ``decode_and_crop_jpeg``), the
  shards read in parallel, TensorFlow's own ops instead of the fused op (``tf.image.resize``,
  uint8, batch, XLA-compiled normalisation), the other decode path,
  Eigen's normalisation instead of XLA's, tf.data's autotuning model on, OpenCV's resizer
  through ``tf.numpy_function``, ``uint8`` batches, and the other recipes;
- (c) **a naive loop**: one Python thread, ``cv2`` decode + NumPy recipe + normalise per image;
- (p) **peers**, on the same images in the same rounds: ``keras.utils.image_dataset_from_directory``
  over the JPEG files (full decode, squash resize to 224x224, then mean/std), and tensorflow/models'
  ``official.vision`` classification eval input over the same shards, written here from its
  published logic (no ``tf-models-official`` dependency): ``TFRecordDataset`` interleave, its
  Decoder (``parse_single_example``), its eval Parser (``extract_jpeg_shape``,
  ``center_crop_image_v2``: ``decode_and_crop_jpeg`` of a 0.875 square with TensorFlow's default
  DCT, ``tf.image.resize`` bilinear to 224x224, ``(x - MEAN_RGB) / STDDEV_RGB``), batch,
  prefetch, tf.data's default options; and the same Keras loader without its mean/std map;
- (r, k) **stages added one at a time**, for the reader (records, + parse, + window decode) and
  for the Keras loader (``read_file``, + ``decode_image``; + resize is the loader as it comes,
  row ``p_keras_no_normalise``); (e) the pipeline plus VGG19's first convolution, float32 batches
  against ``uint8`` batches with the normalisation folded into the convolution
  (:mod:`tfbench.data.fold_normalise`).  ``--profile`` traces the reader, its stages and the Keras
  loader for TensorBoard's Profile tab.  Every row also gives the process's CPU time per image,
  which other jobs on a shared machine move much less than the wall time.

Goals: (b) >= 1.5 x the Keras peer, >= 1.1 x the Keras loader without normalisation, >= 1.5 x the
tensorflow/models path, >= 0.8 x decode-only (a), and >= 2 x (c), as images per second of the
whole machine (the JSON also gives per-core rates).  The JSON records whether they were met
on this machine and its number of cores, never an adjusted number.  Peak RSS of (b) is measured
at two dataset sizes (Linux: ``/proc/self/clear_refs`` resets the peak between them): a
streaming pipeline should use the same memory for both.

The images are the embedded sample's photos (300x451 to 512x512, like ImageNet val's typical
~400x500), repeated and mirrored to the requested count, converted with the real writer.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfbench import timing
from tfbench.data import imagenet_val, images
from tfbench.data import preprocess as pp
from tfbench.plumbing import cli, paths


def make_val_folder(folder: Path, count: int) -> Path:
    """``count`` JPEGs in val layout: the embedded photos cycled, every other round mirrored (distinct bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [images.skimage_photo(name) for name in imagenet_val.EMBEDDED_PHOTOS]
    for i in range(count):
        pixels = photos[i % len(photos)]
        if (i // len(photos)) % 2:
            pixels = pixels[:, ::-1]
        images.save_jpeg(np.ascontiguousarray(pixels), folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG", quality=90)
    return folder


#: tensorflow/models' ``preprocess_ops.MEAN_RGB`` and ``STDDEV_RGB`` (ImageNet statistics on the 0..255 scale)
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def keras_directory_peer(folder: Path, *, batch_size: int, size: int = 224, normalise: bool = True) -> Any:
    """The simplest peer: ``keras.utils.image_dataset_from_directory`` (decode, squash resize), + a mean/std map.

    ``normalise=False``: the loader as it comes, float32 pixels on the 0..255 scale (not yet a model's input).
    """
    import keras
    import tensorflow as tf

    ds = keras.utils.image_dataset_from_directory(str(folder), labels=None, label_mode=None, batch_size=batch_size,
                                                  image_size=(size, size), shuffle=False, interpolation="bilinear",
                                                  verbose=False)
    if not normalise:
        return ds
    mean, std = tf.constant(MEAN_RGB), tf.constant(STDDEV_RGB)
    return ds.map(lambda x: (x - mean) / std, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def keras_stages(files: Sequence[Path], *, batch_size: int) -> dict[str, Any]:
    """The Keras loader's stages, added one at a time, as it builds them (``_paths_and_labels_to_dataset_tf``).

    File names -> ``map(read_file [-> decode_image])`` in parallel -> batch -> prefetch, tf.data's
    default options; one number per image is kept, so nothing after the last stage runs.
    """
    import tensorflow as tf

    def dataset(load):
        paths = tf.data.Dataset.from_tensor_slices([str(p) for p in files])
        return paths.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def decode(path):
        return tf.image.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)[0, 0, 0]

    def read(path):
        return tf.strings.length(tf.io.read_file(path))

    return {"k1_read_files": ("Keras stages: read_file", dataset(read)),
            "k2_decode": ("Keras stages: read_file + decode_image (TensorFlow's default DCT)", dataset(decode))}


def reader_stages(tfrecord_dir: Path, recipe: str, *, batch_size: int, options: Any) -> dict[str, Any]:
    """The reader's stages (:mod:`tfbench.data.reader`), added one at a time; one number per image is kept.

    records (interleaved shards) -> decoder (``parse_example``) -> window decode; the next stage,
    the fused resize + normalise and the float32 batch, is the whole pipeline (b).
    """
    import tensorflow as tf

    from tfbench.data import reader
    from tfbench.data.example import parse_example

    def dataset(fn):
        records, _ = reader.records(tfrecord_dir)
        records = records.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
        records = records.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE)
        return records.prefetch(tf.data.AUTOTUNE).with_options(options)

    def parse(serialized):
        return parse_example(serialized, ("image/encoded", "image/class/label"))

    return {"r1_records": ("reader stages: records (shards interleaved)", dataset(tf.strings.length)),
            "r2_parse": ("reader stages: records + parse_example",
                         dataset(lambda s: tf.strings.length(parse(s)["image/encoded"]))),
            "r3_window_decode": (f"reader stages: records + parse + {recipe} window decode",
                                 dataset(lambda s: pp.tf_decode_window(parse(s)["image/encoded"], recipe)[0, 0, 0]))}


def tf_models_eval_peer(tfrecord_dir: Path, *, batch_size: int, size: int = 224) -> Any:
    """tensorflow/models' ``official.vision`` classification eval input, from its published logic.

    InputReader: shards interleaved (``TFRecordDataset``), decode + parse mapped in parallel,
    batched, prefetched, tf.data's default options.  Decoder: ``parse_single_example`` of
    ``image/encoded`` and ``image/class/label``.  Parser (eval, ``decode_jpeg_only``):
    ``center_crop_image_v2`` then ``tf.image.resize`` bilinear and ``normalize_image``.
    """
    import tensorflow as tf

    from tfbench.data.manifest import Manifest

    files = Manifest.read(tfrecord_dir).shard_files(tfrecord_dir)
    mean, std = tf.constant(MEAN_RGB), tf.constant(STDDEV_RGB)

    def decode_and_parse(serialized: Any) -> tuple[Any, Any]:
        data = tf.io.parse_single_example(serialized, {
            "image/encoded": tf.io.FixedLenFeature((), tf.string, default_value=""),
            "image/class/label": tf.io.FixedLenFeature((), tf.int64, default_value=-1)})
        image_bytes = data["image/encoded"]
        image = center_crop_image_v2(image_bytes, tf.image.extract_jpeg_shape(image_bytes))
        image = tf.image.resize(image, (size, size), method=tf.image.ResizeMethod.BILINEAR)
        image.set_shape([size, size, 3])
        image = (image - mean) / std
        image = tf.image.convert_image_dtype(image, tf.float32)
        return image, tf.cast(data["image/class/label"], tf.int32)

    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=len(files), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(decode_and_parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=False).prefetch(tf.data.AUTOTUNE)


def center_crop_image_v2(image_bytes: Any, image_shape: Any, crop_fraction: float = 0.875) -> Any:
    """tensorflow/models' ``official.vision.ops.preprocess_ops.center_crop_image_v2``, its published lines.

    The peer's crop, and the reference the A-window-v2 recipe is tested against (bit for bit).
    """
    import tensorflow as tf

    with tf.name_scope("center_image_crop_v2"):
        image_height = tf.cast(image_shape[0], tf.float32)
        image_width = tf.cast(image_shape[1], tf.float32)
        crop_size = crop_fraction * tf.math.minimum(image_height, image_width)
        crop_offset_height = tf.cast((image_height - crop_size) / 2.0, tf.int32)
        crop_offset_width = tf.cast((image_width - crop_size) / 2.0, tf.int32)
        crop_size = tf.cast(crop_size, tf.int32)
        crop_window = tf.stack([crop_offset_height, crop_offset_width, crop_size, crop_size])
        return tf.image.decode_and_crop_jpeg(image_bytes, crop_window, channels=3)


def _rss_mib() -> float:
    """Peak resident memory since the last reset (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter for this process (Linux); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def first_conv_cases(float_ds: Any, uint8_ds: Any, spec: pp.InputSpec, images: int, *,
                     seed: int) -> list[tuple[str, str, Any, int]]:
    """Two benchmark cases: each pipeline feeding VGG19's first convolution (3x3x3x64, "same", seeded weights).

    float32: the normalised batches into the convolution as it is; uint8: the pixel batches into
    the same convolution with the normalisation folded in (:mod:`tfbench.data.fold_normalise`).
    """
    import tensorflow as tf

    from tfbench.data import fold_normalise

    rng = np.random.default_rng(seed)
    kernel = rng.normal(0.0, 0.05, (3, 3, 3, 64)).astype(np.float32)  # block1_conv1's shape
    bias = rng.normal(0.0, 0.05, 64).astype(np.float32)

    @tf.function
    def conv(x):
        return tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"), bias))[0, 0, 0, 0]

    folded = fold_normalise.folded_conv2d(kernel, bias, spec, padding="same")

    @tf.function
    def folded_conv(pixels):
        return tf.nn.relu(folded(pixels))[0, 0, 0, 0]

    def run(ds, fn) -> int:
        done = 0
        for batch, _ in ds:
            fn(batch).numpy()
            done += int(batch.shape[0])
        return done

    return [("e_float32_first_conv", "b + VGG19's first convolution (float32 normalised batches)",
             lambda: run(float_ds, conv), images),
            ("e_uint8_folded_first_conv", "b_uint8 + the first convolution with the normalisation folded in",
             lambda: run(uint8_ds, folded_conv), images)]


def write_profile(run_dir: Path, datasets: dict[str, Any]) -> Path:
    """One pass of each dataset under the TensorFlow profiler, each in a step named after it; the run's folder.

    TensorBoard's Profile tab then shows, on one time line, every tf.data iterator's events
    (``Iterator::...::ParallelMapV2``, ``...::Prefetch``) and the ops the map functions ran on
    tf.data's threads (``DecodeAndCropJpeg``, ``ResizeNormalise``, ``ParseExampleV2``); its
    ``tf_data_bottleneck_analysis`` tool names the slowest stage of each input pipeline.
    """
    import tensorflow as tf

    out = run_dir / "profile"
    tf.profiler.experimental.start(str(out))
    try:
        for step, (name, ds) in enumerate(datasets.items()):
            with tf.profiler.experimental.Trace(name, step_num=step, _r=1):
                for _ in ds:
                    pass
    finally:
        tf.profiler.experimental.stop()
    return out


def run_benchmark(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure (a) decode only, (b) the TFRecord pipeline, (c) a naive loop; write logs/bench/pipeline-*.json."""
    parser = cli.parser("bench pipeline", __doc__.split("\n\n")[0])
    parser.add_argument("--images", type=cli.positive_int, default=512,
                        help="images in the first dataset (the second has twice); a pass over 512 takes about "
                             "0.7 s, long enough that starting the pipeline is a small part of it")
    cli.add_batch_size(parser, 32)
    parser.add_argument("--recipe", default="A-window", choices=sorted(pp.RECIPES),
                        help="the recipe of (a2), (b) and (c) (default: A-window, tensorflow/models' eval crop)")
    parser.add_argument("--compare-recipes", nargs="*", default=["A-aspect", "B", "A-window-v2"],
                        choices=sorted(pp.RECIPES), metavar="RECIPE",
                        help="more (b) rows, one per recipe (default: A-aspect B A-window-v2)")
    parser.add_argument("--spec", choices=("torch", "caffe"), default="torch",
                        help="normalisation of (b) and (c): Keras' torch mode (mean/std, as the peers) or caffe")
    cli.add_repeats(parser, 5, help="timed passes per case, taken round robin (after one warm-up pass each)")
    parser.add_argument("--workdir", help="where to build the datasets (default: a temporary folder)")
    parser.add_argument("--first-conv", action=argparse.BooleanOptionalAction, default=True,
                        help="rows e_*: the pipeline plus VGG19's first convolution (seeded weights), float32 batches "
                             "against uint8 batches with the normalisation folded into the convolution")
    cli.add_seed(parser)
    parser.add_argument("--profile", action="store_true",
                        help="also trace one pass of (b), of its stages and of the Keras loader with the TensorFlow "
                             "profiler: a run under LOGDIR/pipeline/ for TensorBoard's Profile tab")
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    ns = cli.parse(parser, argv)
    if ns.workdir:
        cli.check_output_dir(ns.workdir, "--workdir")
    if ns.workdir:
        return _run(ns, Path(ns.workdir))
    with tempfile.TemporaryDirectory(prefix="tfbench-pipeline-") as tmp:
        return _run(ns, Path(tmp))


def _run(ns: argparse.Namespace, work: Path) -> dict[str, Any]:
    import tensorflow as tf

    from tfbench.data import reader



    cores = timing.usable_cores()
    sizes = (ns.images, 2 * ns.images)
    dirs: dict[int, tuple[Path, Path]] = {}
    convert_rates = {}
    for n in sizes:
        src = make_val_folder(work / f"val-{n}", n)
        out = work / f"tfrecords-{n}"
        start = time.perf_counter()
        imagenet_val.convert(src, out, num_shards=max(2, n // 64), workers=cores, progress=False)
        convert_rates[n] = n / (time.perf_counter() - start)
        dirs[n] = (src, out)
    n = sizes[0]
    src, out = dirs[n]
    files = sorted(src.iterdir())
    spec = pp.TORCH if ns.spec == "torch" else pp.CAFFE

    # Every dataset here runs with the pipeline's own tf.data options (autotuning model off: see
    # make_dataset), so the rows differ only in the work they do.
    options = tf.data.Options()
    options.autotune.enabled = False

    # (a) decode only: the bytes in memory, decoded in parallel, results dropped.  We keep one pixel:
    # keeping only the shape would let grappler fold a static 224x224x3 shape and skip all the work.
    encoded = tf.constant([p.read_bytes() for p in files])
    decode_only = (tf.data.Dataset.from_tensor_slices(encoded)
                   .map(lambda b: tf.io.decode_jpeg(b, channels=3, dct_method="INTEGER_ACCURATE")[0, 0, 0],
                        num_parallel_calls=tf.data.AUTOTUNE)
                   .batch(ns.batch_size).prefetch(tf.data.AUTOTUNE).with_options(options))

    # (a1) decode only the recipe's window (crop-first recipes): what (b) decodes; (a2) minus (a1) is the resize.
    def window_decode(jpeg):
        return pp.tf_decode_window(jpeg, ns.recipe, size=spec.size)[0, 0, 0]

    window_only = (tf.data.Dataset.from_tensor_slices(encoded).map(window_decode, num_parallel_calls=tf.data.AUTOTUNE)
                   .batch(ns.batch_size).prefetch(tf.data.AUTOTUNE).with_options(options))

    # (a2) decode + crop + resize of the same in-memory bytes: what (b) computes, minus reading and batching.
    decode_resize = (tf.data.Dataset.from_tensor_slices(encoded)
                     .map(lambda b: pp.tf_decode_recipe(b, ns.recipe, size=spec.size)[0, 0, 0],
                          num_parallel_calls=tf.data.AUTOTUNE)
                     .batch(ns.batch_size).prefetch(tf.data.AUTOTUNE).with_options(options))

    def count(ds) -> int:
        """Run one pass over ``ds``; the number of images it produced."""
        return sum(int((item[1] if isinstance(item, tuple) else item).shape[0]) for item in ds)

    def pipeline(tfrecords: Path = out, **kwargs):
        return reader.make_dataset(tfrecords, batch_size=ns.batch_size, spec=spec, **{"recipe": ns.recipe, **kwargs})

    # (c) the naive loop.
    def naive() -> int:
        batch, done = [], 0
        for path in files:
            batch.append(pp.prepare(images.load_image(path, "cv2"), spec, ns.recipe, backend="cv2"))
            if len(batch) == ns.batch_size:
                np.stack(batch)
                done, batch = done + len(batch), []
        if batch:
            np.stack(batch)
            done += len(batch)
        return done

    private_pool = tf.data.Options()
    private_pool.threading.private_threadpool_size = cores
    keras_peer = keras_directory_peer(src, batch_size=ns.batch_size)
    keras_raw = keras_directory_peer(src, batch_size=ns.batch_size, normalise=False)
    models_peer = tf_models_eval_peer(out, batch_size=ns.batch_size)

    from tfbench.data import resize_normalise

    decode_path = "decode_and_crop_jpeg" if ns.recipe in pp.CROP_FIRST else "full decode_jpeg"
    other_path = "full decode_jpeg" if ns.recipe in pp.CROP_FIRST else "decode_and_crop_jpeg + crop_and_resize"
    fused = ns.recipe in pp.CROP_FIRST and resize_normalise.available(resize_normalise.DECODE_LIBRARY, None)
    steps = ("records batched, then per batch parse_example + C++ DecodeCropResizeNormalise: window decode, "
             "resize, normalise" if fused else f"{decode_path}, tf.image.resize, uint8 -> batch -> XLA normalise")
    datasets = {  # name: (what, dataset)
        "a_decode_only": ("tf.data parallel decode_jpeg of in-memory bytes", decode_only),
        **({"a1_window_decode_only": (f"as a, decoding only the {ns.recipe} window (decode_and_crop_jpeg)",
                                      window_only)} if ns.recipe in pp.CROP_FIRST else {}),
        "a2_decode_and_resize": (f"as a, plus the {ns.recipe} crop and resize ({decode_path}, tf.image.resize)",
                                 decode_resize),
        "b_pipeline": (f"TFRecord -> {ns.recipe} ({steps}) -> {ns.batch_size}x224x224x3 float32",
                       pipeline()),
        **({"b_one_thread_per_batch": ("as b, each batch decoded on one thread (tf.data's, no intra-op threads)",
                                       pipeline(resizer="fused-one-thread"))} if fused else {}),
        **({"b_per_image": ("as b, one map call per image (window decode, then the C++ resize + normalise), "
                            "then a batch", pipeline(resizer="fused-per-image"))} if fused else {}),
        **({"b_tensorflow_ops": ("as b, with TensorFlow's ops instead of the fused op: tf.image.resize, uint8, "
                                 "batch, XLA normalise", pipeline(resizer="tf"))} if fused else {}),
        "b_other_decode_path": (f"as b, with {other_path}", pipeline(fast=ns.recipe not in pp.CROP_FIRST)),
        "b_eigen_normalise": ("as b_tensorflow_ops, normalised by TensorFlow's Eigen kernels instead of XLA",
                              pipeline(resizer="tf", xla_normalise=False)),
        "b_autotune_model": ("as b, with tf.data's autotuning model on", pipeline(autotune=True)),
        "b_cv2_resize": ("as b_tensorflow_ops, OpenCV resize through tf.numpy_function", pipeline(resizer="cv2")),
        "b_uint8": ("as b, uint8 batches (fused resize + round, no normalisation: for a model that folds it in)",
                    pipeline(normalise=False)),
        "b_parallel_reads": ("as b, up to 8 shards read in parallel and interleaved (parallel_reads=8)",
                             pipeline(parallel_reads=8)),
        "b_private_threadpool": (f"as b, on a private tf.data thread pool of {cores} threads",
                                 pipeline().with_options(private_pool)),
        "p_keras_directory": ("peer: keras.utils.image_dataset_from_directory over the JPEGs (squash resize), "
                              "mean/std map", keras_peer),
        "p_keras_no_normalise": ("peer: the same Keras loader without the mean/std map (float32 pixels 0..255)",
                                 keras_raw),
        "p_tf_models_eval": ("peer: tensorflow/models official.vision eval input (center_crop_image_v2, "
                             "tf.image.resize, mean/std) over the same shards", models_peer),
    }
    for recipe in sorted(set(ns.compare_recipes) - {ns.recipe}):
        datasets[f"b_recipe_{recipe}"] = (f"as b, recipe {recipe}", pipeline(recipe=recipe))
    # Stages added one at a time, for the reader and the Keras loader: the differences between
    # consecutive rows are what each stage costs.
    if ns.recipe in pp.CROP_FIRST:
        datasets.update(reader_stages(out, ns.recipe, batch_size=ns.batch_size, options=options))
    datasets.update(keras_stages(files, batch_size=ns.batch_size))
    # every path sees every image once before timing
    for _, ds in datasets.values():
        assert count(ds) == n
    assert naive() == n
    pipeline_2n = pipeline(dirs[sizes[1]][1])

    cases = [(name, what, (lambda ds=ds: count(ds)), n) for name, (what, ds) in datasets.items()]
    if "b_uint8" in datasets and ns.first_conv:
        cases += first_conv_cases(datasets["b_pipeline"][1], datasets["b_uint8"][1], spec, n, seed=ns.seed)
    cases += [("c_naive_loop", f"one Python thread: cv2 decode + NumPy {ns.recipe} + normalise", naive, n),
              ("b_pipeline_2x_images", "as b, on a dataset twice as large", lambda: count(pipeline_2n), sizes[1])]
    # Round robin (timing.compare): every repeat times each case once, so load from other jobs hits all alike.
    # Beside the wall time, the process's CPU time per pass: what a row costs, much less sensitive
    # than the wall time to other jobs taking the cores.  Python's garbage collector is frozen over
    # the objects that exist before timing (TensorFlow's and Keras' modules): otherwise its full
    # collections, walking them from the consuming loop, take a share of the cores that depends on
    # when they happen to run, not on the pipeline.
    cpu: dict[str, list[float]] = {name: [] for name, *_ in cases}

    def with_cpu_time(name: str, fn: Any) -> Any:
        def run() -> Any:
            start = time.process_time()
            result = fn()
            cpu[name].append(time.process_time() - start)
            return result
        return run

    gc.collect()
    gc.freeze()
    try:
        rows = timing.compare({name: with_cpu_time(name, fn) for name, _, fn, _ in cases}, warmup=1,
                             repeats=ns.repeats)
    finally:
        gc.unfreeze()
    rate = {}
    for row, (name, what, _, images_per_pass) in zip(rows, cases):
        rate[name] = images_per_pass / (row.median_ms / 1e3)
        cpu_us = sorted(1e6 * t / images_per_pass for t in cpu[name][1:])  # the warm-up pass left out
        row.extra.update({"images": images_per_pass, "what": what, "images_per_s": rate[name],
                          "images_per_s_per_core": rate[name] / cores,
                          "cpu_us_per_image": statistics.median(cpu_us),
                          "cpu_us_per_image_p10": timing.percentile(cpu_us, 0.1),
                          "cpu_us_per_image_p90": timing.percentile(cpu_us, 0.9)})
    # Peak memory of one pass of (b) at each size, the counter reset in between.
    rss_ok = _reset_peak_rss()
    count(datasets["b_pipeline"][1])
    rss_n = _rss_mib()
    _reset_peak_rss()
    count(pipeline_2n)
    rss_2n = _rss_mib()
    by_name = {row.case: row for row in rows}
    by_name["b_pipeline"].extra["peak_rss_mib"] = rss_n
    by_name["b_pipeline_2x_images"].extra["peak_rss_mib"] = rss_2n

    ratios = {"b_over_a": rate["b_pipeline"] / rate["a_decode_only"],
              "b_over_c": rate["b_pipeline"] / rate["c_naive_loop"],
              "b_over_a2": rate["b_pipeline"] / rate["a2_decode_and_resize"],
              "a2_over_a": rate["a2_decode_and_resize"] / rate["a_decode_only"],
              **({"a1_over_a": rate["a1_window_decode_only"] / rate["a_decode_only"],
                  "a2_over_a1": rate["a2_decode_and_resize"] / rate["a1_window_decode_only"]}
                 if "a1_window_decode_only" in rate else {}),
              "b_2x_over_b": rate["b_pipeline_2x_images"] / rate["b_pipeline"],
              "b_over_keras_peer": rate["b_pipeline"] / rate["p_keras_directory"],
              "b_over_keras_no_normalise": rate["b_pipeline"] / rate["p_keras_no_normalise"],
              "b_over_tf_models_peer": rate["b_pipeline"] / rate["p_tf_models_eval"]}
    for name in datasets:
        if name.startswith(("b_", "p_")) and name != "b_pipeline":
            ratios[f"{name}_over_b"] = rate[name] / rate["b_pipeline"]
    if "e_uint8_folded_first_conv" in rate:
        ratios["e_uint8_folded_over_e_float32"] = rate["e_uint8_folded_first_conv"] / rate["e_float32_first_conv"]
    extra = {
        "cores": cores,
        "targets": {"b_over_keras_peer >= 1.5": ratios["b_over_keras_peer"] >= 1.5,
                    "b_over_keras_no_normalise >= 1.1": ratios["b_over_keras_no_normalise"] >= 1.1,
                    "b_over_a >= 0.8": ratios["b_over_a"] >= 0.8,
                    "b_over_tf_models_peer >= 1.5": ratios["b_over_tf_models_peer"] >= 1.5,
                    "b_over_c >= 2": ratios["b_over_c"] >= 2.0},
        "peak_rss_mib": {str(sizes[0]): rss_n, str(sizes[1]): rss_2n, "resettable": rss_ok},
        "convert_images_per_s": {str(k): v for k, v in convert_rates.items()},
        "recipe": ns.recipe, "batch_size": ns.batch_size, "spec": ns.spec,
        "note": "shared machine: other jobs ran at the same time; compare ratios from one run only",
    }
    if ns.profile:
        traced = ("b_pipeline", "r1_records", "r2_parse", "r3_window_decode", "p_keras_no_normalise",
                  "p_keras_directory", "k1_read_files", "k2_decode")
        extra["profile"] = str(write_profile(paths.run_dir(ns.logdir, "pipeline"),
                                             {name: datasets[name][1] for name in traced if name in datasets}))
    data = timing.report("pipeline", rows, ratios, logdir=ns.logdir, extra=extra)
    met = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in extra["targets"].items())
    print(f"targets on {cores} cores: {met}")
    if ns.profile:
        print(f"profile: tensorboard --logdir {extra['profile']}  (Profile tab: trace_viewer, "
              "tf_data_bottleneck_analysis)")
    print(f"peak RSS of (b): {rss_n:.0f} MiB at {sizes[0]} images, {rss_2n:.0f} MiB at {sizes[1]} images"
          + ("" if rss_ok else " (peak not resettable here: the second number includes the first run)"))
    return data
