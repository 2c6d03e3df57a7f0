"""Read TFRecord shards as a ``tf.data`` pipeline, in stages (exercise 4.7).

The stages, as tensorflow/models separates them:
1. **records**: the manifest is read and every shard checked (present, same size; optionally
   same sha256), then the shards are read in order, or interleaved in parallel (:func:`records`);
2. **decoder**: serialized ``tf.train.Example`` to tensors (:func:`tfbench.data.example.parse_example`);
3. **parser**: JPEG bytes to the model's input, one parser per way of resizing
   (:data:`PARSERS`): the fused C++ op for crop-first recipes, ``tf.image`` ops, or OpenCV;
4. **batch, normalise, prefetch** (:func:`make_dataset`).

The default parser for the crop-first recipes works on whole batches: the serialized records
are batched first, then one map call parses the batch and one C++ op decodes, crops, resizes
and normalises every image of it straight into the batch tensor (tf.data's "vectorized
mapping": per-element work moved into one call per batch).

:func:`iterate` names the shard when a record turns out corrupt while reading, and the total
count is asserted at the end.  :func:`decoded_dataset` is the reusable decode-and-resize step
(e.g. 32x32 grayscale for LeNet-5).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, NoReturn

from tfbench.data.example import parse_example, schema_problem
from tfbench.data.manifest import Manifest
from tfbench.plumbing.errors import UserError, first_line

if TYPE_CHECKING:  # annotations only: TensorFlow is imported when a pipeline is built
    import tensorflow as tf


def records(tfrecord_dir: str | Path, *, verify: str = "size", deterministic: bool = True,
            parallel_reads: int | None = None) -> tuple[Any, Manifest]:
    """Serialized examples of every shard; the manifest's total count is asserted.

    By default the shards are read one after another, so the records come in the order the
    writer stored them (its shards are contiguous runs of the sorted source files): on a local
    disk or in the page cache this is the cheapest way, 56 against 100 us of CPU per 110 KB
    record for 8 shards read in parallel (2-core AVX-512 EPYC).  ``parallel_reads=N``
    interleaves N shards read in parallel, which pays on storage with long latencies (a network
    file system, object storage) and mixes the shards.
    """
    import tensorflow as tf

    manifest = Manifest.read(tfrecord_dir)
    files = manifest.shard_files(tfrecord_dir, verify=verify)
    if parallel_reads is None:
        ds = tf.data.TFRecordDataset(files)
    else:
        ds = tf.data.Dataset.from_tensor_slices(files)
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), parallel_reads), block_length=1,
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return ds.apply(tf.data.experimental.assert_cardinality(manifest.written)), manifest


@dataclass(frozen=True)
class Parser:
    """The parser stage for one way of resizing: JPEG bytes -> one image (or a batch -> a batch), uint8 or
    already normalised.  ``make``'s ``normalise=False`` asks a normalising parser for uint8 pixels instead;
    the others give uint8 pixels either way and the batch is normalised after them."""

    name: str
    normalises: bool  # True: the output is the model's input; False: uint8 pixels, normalised per batch
    crop_first_only: bool  # only for recipes that crop before resizing (the window is decoded alone)
    make: Callable[..., Callable[..., Any]]  # make(recipe, spec, antialias, fast, normalise) -> fn(jpeg bytes)
    batched: bool = False  # True: fn takes a batch of JPEG strings (and their file names), returns the batch


def _fused_batch_parser(recipe: str, spec: Any, antialias: bool, fast: bool | None,
                        normalise: bool = True, parallel: bool = True) -> Callable[[Any], Any]:
    """A batch of JPEGs -> the batch of network inputs in one C++ op (``DecodeCropResizeNormalise``).

    Each image's crop window is decoded with its margin into a scratch buffer, then resized,
    rounded and normalised in place into its slot of the batch: the per-image parser's pixels, bit
    for bit, without its twenty small ops per image, a tensor per image, or the copy into the batch.
    The images of a batch are shared out over TensorFlow's intra-op threads (``parallel``).  A bad
    JPEG is named in the error by its place in the batch and its record's file name.
    The backend rule is applied here, not inside the dataset's map function: without the library
    the batch is decoded image by image with TensorFlow's ops (the same pixels).
    """
    from tfbench.data import resize_normalise as rn

    backend = "cpp" if rn.available(rn.DECODE_LIBRARY, None) else "fallback"

    def parse(jpegs: Any, names: Any = None) -> Any:
        return rn.decode_crop_resize_normalise(jpegs, recipe, spec, normalise=normalise, whole_image=fast is False,
                                               parallel=parallel, names=names, backend=backend)

    return parse


def _fused_parser(recipe: str, spec: Any, antialias: bool, fast: bool | None,
                  normalise: bool = True) -> Callable[[Any], Any]:
    """Per image: decode the crop window, then resize, round and normalise it in place in one C++ op.

    The op (:mod:`tfbench.data.resize_normalise`) reads the window inside the decoded pixels and
    their margin, so the window is never copied out.

    ``normalise=False``: the op stops at the rounded ``uint8`` pixels, in ``spec``'s channel order.
    """
    from tfbench.data import preprocess as pp
    from tfbench.data import resize_normalise as rn

    backend = "cpp" if rn.available(rn.LIBRARY, None) else "fallback"  # decided here, not in the map function

    def parse(jpeg: Any) -> Any:
        if fast is False:
            window = pp.tf_decode_window(jpeg, recipe, size=spec.size, fast=False)
            return rn.resize_normalise(window, spec.size, spec, channel_order="RGB", normalise=normalise,
                                       backend=backend)
        # the window with its decode margin, read in place by the op (no Slice copies it out)
        decoded, box = pp.tf_decode_window_box(jpeg, recipe, size=spec.size)
        return rn.resize_normalise(decoded, spec.size, spec, channel_order="RGB", normalise=normalise, box=box,
                                   backend=backend)

    return parse


def _tf_parser(recipe: str, spec: Any, antialias: bool, fast: bool | None,
               normalise: bool = True) -> Callable[[Any], Any]:
    """``tf.image`` decode (of the window, for crop-first recipes) and resize, rounded to uint8."""
    from tfbench.data import preprocess as pp

    def parse(jpeg: Any) -> Any:
        return pp.tf_to_uint8(pp.tf_decode_recipe(jpeg, recipe, size=spec.size, antialias=antialias, fast=fast))

    return parse


def _cv2_parser(recipe: str, spec: Any, antialias: bool, fast: bool | None,
                normalise: bool = True) -> Callable[[Any], Any]:
    """OpenCV's resize through ``tf.numpy_function``: the NumPy recipe's exact pixels, at a Python call per image."""
    import tensorflow as tf

    from tfbench.data import preprocess as pp

    def cv2_recipe(pixels: Any) -> Any:
        return pp.recipe_pixels(pixels, recipe, size=spec.size, backend="cv2")

    def parse(jpeg: Any) -> Any:
        pixels = tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE")
        image = tf.numpy_function(cv2_recipe, [pixels], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [spec.size, spec.size, 3])

    return parse


#: ``make_dataset(resizer=...)``: the parser of each way of resizing.
PARSERS: dict[str, Parser] = {
    "fused": Parser("fused", normalises=True, crop_first_only=True, make=_fused_batch_parser, batched=True),
    "fused-one-thread": Parser("fused-one-thread", normalises=True, crop_first_only=True, batched=True,
                               make=functools.partial(_fused_batch_parser, parallel=False)),
    "fused-per-image": Parser("fused-per-image", normalises=True, crop_first_only=True, make=_fused_parser),
    "tf": Parser("tf", normalises=False, crop_first_only=False, make=_tf_parser),
    "cv2": Parser("cv2", normalises=False, crop_first_only=False, make=_cv2_parser),
}
#: "auto" is "fused" for the crop-first recipes without antialiasing where the batch decoder's library is
#: used (the backend rule, ``$TFBENCH_OPS_BACKEND``), else "tf".
RESIZERS = ("auto", *PARSERS)


def choose_parser(resizer: str, recipe: str, antialias: bool) -> Parser:
    """The parser for ``resizer`` ("auto" picks the fused op where it gives the same numbers); UserError if unfit.

    "auto" asks the backend rule (:mod:`tfbench.operators.backend`) whether the batch decoder's library is
    used here: without it (no compiler, ``TFBENCH_OPS_BACKEND=fallback``) it picks "tf", after one warning.
    """
    from tfbench.data import preprocess as pp
    from tfbench.data import resize_normalise as rn

    if resizer not in RESIZERS:
        raise UserError(f"resizer must be one of {', '.join(RESIZERS)}, got {resizer!r}")
    crop_first = recipe in pp.CROP_FIRST and not antialias
    if resizer == "auto":
        return PARSERS["fused" if crop_first and rn.available(rn.DECODE_LIBRARY, None) else "tf"]
    parser = PARSERS[resizer]
    if parser.crop_first_only and not crop_first:
        raise UserError(f"resizer={resizer!r} resizes the crop window without antialiasing: it needs a crop-first "
                        f"recipe ({', '.join(pp.CROP_FIRST)}) and antialias=False, got {recipe!r}, {antialias}")
    return parser


def make_dataset(tfrecord_dir: str | Path, *, batch_size: int, recipe: str = "A-aspect", spec: Any = None,
                 antialias: bool = False, fast: bool | None = None, resizer: str = "auto", verify: str = "size",
                 deterministic: bool = True, drop_remainder: bool = False, with_filenames: bool = False,
                 xla_normalise: bool = True, autotune: bool = False, normalise: bool = True,
                 parallel_reads: int | None = None) -> tf.data.Dataset:
    """``tf.data.Dataset`` of ``(images float32 NxSxSx3, labels int32)`` ready for a network expecting ``spec``.

    Labels are 0-based (Keras convention) whatever the shards store (the manifest says which).
    ``spec`` is a ``tfbench.data.preprocess.InputSpec`` (default: Keras caffe mode, VGG19's);
    decoded pixels are RGB, :func:`tfbench.data.preprocess.tf_normalise` reorders them for the spec.
    ``fast``: decode only the crop window (``decode_and_crop_jpeg``); default: for the crop-first
    recipes B and A-window only, because A-aspect's exact fast path needs ``crop_and_resize``,
    which costs more on CPU than the decoding it saves.  ``resizer``: ``"fused"`` decodes, crops,
    resizes, rounds and normalises a whole batch of records in one C++ op
    (:mod:`tfbench.data.resize_normalise`; the same numbers as ``"tf"``, crop-first recipes only,
    built on first use, TensorFlow's ops if it cannot be built); ``"fused-per-image"``: the same
    numbers from a map function per image (``decode_and_crop_jpeg``, then one C++ op that resizes,
    rounds and normalises) and a batch; ``"fused-one-thread"``: ``"fused"`` with each batch decoded on
    one thread; ``"tf"``: ``tf.image.resize``, uint8, and per batch the XLA-compiled
    normalisation; ``"cv2"``: OpenCV's resize through ``tf.numpy_function`` (the NumPy recipe's
    pixels, but the Python call costs more than the faster resize saves, and the dataset cannot be
    serialized); ``"auto"`` (default): ``"fused"`` for the crop-first recipes without antialiasing,
    else ``"tf"``.
    ``with_filenames`` adds a third element, the stored file names.  ``parallel_reads``: see :func:`records`.
    ``normalise=False``: ``uint8`` batches of the same pixels in ``spec``'s channel order, not
    normalised, for a model whose first convolution folds the normalisation in
    (:func:`tfbench.data.fold_normalise.fold_first_conv`): a quarter of the bytes to batch.

    With ``"tf"``, each image leaves the parallel map as uint8 (rounded, like the NumPy recipes'
    output) and the batch is normalised in one XLA-compiled loop (``xla_normalise``; see
    :func:`tfbench.data.preprocess.tf_normaliser`).  tf.data's autotuning model is off by default
    (``autotune``): every ``AUTOTUNE`` then means one worker per core.  With the model on, the
    parallelism it chose on our 2-core machine left one core idle in about half of the passes
    (A-aspect: 375 or 600 img/s, pass by pass, with nothing else changed); the benchmark
    (``python -m tfbench.bench pipeline``) measures both.
    """
    import tensorflow as tf

    from tfbench.data import preprocess as pp

    spec = spec or pp.CAFFE
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    parser = choose_parser(resizer, recipe, antialias)
    parse_images = parser.make(recipe, spec, antialias, fast, normalise=normalise)
    ds, manifest = records(tfrecord_dir, verify=verify, deterministic=deterministic, parallel_reads=parallel_reads)
    names = with_filenames or parser.batched  # the batch decoder names a bad JPEG by its file
    keys = ("image/encoded", "image/class/label") + (("image/filename",) if names else ())

    def decode_and_parse(serialized: Any) -> tuple[Any, ...]:
        """One serialized record -> one image, or (batched parser) a batch of records -> a batch."""
        features = parse_example(serialized, keys)
        if parser.batched:
            images = parse_images(features["image/encoded"], features["image/filename"])
        else:
            images = parse_images(features["image/encoded"])
        labels = tf.cast(manifest.zero_based(features["image/class/label"]), tf.int32)
        return (images, labels, features["image/filename"]) if with_filenames else (images, labels)

    if parser.batched:  # batch the records, then one call per batch
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(decode_and_parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    else:
        ds = ds.map(decode_and_parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=deterministic)
    if not parser.normalises and not normalise and spec.channel_order != "RGB":
        def reorder(images: Any, *labels_and_filenames: Any) -> tuple[Any, ...]:
            return (tf.reverse(images, axis=[-1]), *labels_and_filenames)

        ds = ds.map(reorder, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    elif not parser.normalises and normalise:
        normalise_pixels = pp.tf_normaliser(spec, channel_order="RGB", xla=xla_normalise)

        def normalise_batch(images: Any, *labels_and_filenames: Any) -> tuple[Any, ...]:
            return (normalise_pixels(images), *labels_and_filenames)

        ds = ds.map(normalise_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.autotune.enabled = autotune
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def iterate(dataset: Any, tfrecord_dir: str | Path) -> Iterable[Any]:
    """Iterate ``dataset`` read from ``tfrecord_dir``; a read error becomes a UserError naming the bad shard.

    TensorFlow reports a damaged record as "corrupted record at 12" without the file; on such an
    error we check every shard's sha256 against the manifest to say which one it is.  A bad JPEG in
    an intact record is the batch decoder's own error, which names the image's file: it is passed
    on as it is, without hashing the shards; TensorFlow's own JPEG ops do not name it, so the
    records from the failed batch on are decoded one by one to find it (:func:`find_bad_image`).
    """
    import tensorflow as tf

    done = 0  # records delivered whole: where, in file order, the search for a bad image starts
    try:
        for element in dataset:
            yield element
            first = element[0] if isinstance(element, tuple) else element
            done += int(first.shape[0]) if first.shape.rank else 1
    except tf.errors.InvalidArgumentError as err:
        if BAD_IMAGE in err.message:
            raise UserError(f"{tfrecord_dir}: {_tf_message(err)}") from None
        if _JPEG_ERROR.search(err.message):
            found = find_bad_image(tfrecord_dir, start=done)
            if found is not None:
                raise UserError(f"{tfrecord_dir}: {found}") from None
        _raise_for_shards(err, tfrecord_dir)
    except (tf.errors.DataLossError, tf.errors.FailedPreconditionError) as err:
        _raise_for_shards(err, tfrecord_dir)


#: The batch decoder's errors start so (custom_ops/decode_resize_normalise/decode_resize_normalise.cc).
BAD_IMAGE = "DecodeCropResizeNormalise: "


#: TensorFlow's own JPEG ops fail with "Invalid JPEG data or crop window, data size N" and the like,
#: without saying which image: the message that makes :func:`iterate` look for it.
_JPEG_ERROR = re.compile(r"JPEG|image format|decode", re.IGNORECASE)


def find_bad_image(tfrecord_dir: str | Path, start: int = 0) -> str | None:
    """The first record whose JPEG TensorFlow cannot decode, as "record N "file.JPEG": what is wrong"; else None.

    Used when TensorFlow's JPEG ops (the parsers other than the batch decoder, which names the image
    itself) failed inside the pipeline: the records are read again in file order, from ``start``
    (the records the pipeline delivered before the error: with the default sequential reading the
    bad one is in the next batch), then from the beginning, each image decoded alone.
    """
    import tensorflow as tf

    ds, manifest = records(tfrecord_dir)
    total = manifest.written
    keys = ("image/encoded", "image/filename")
    for begin, end in ((start, total), (0, start)):
        for index, serialized in enumerate(ds.skip(begin).take(end - begin), begin):
            features = parse_example(serialized, keys)
            try:
                tf.io.decode_image(features["image/encoded"], channels=3, expand_animations=False)
            except tf.errors.InvalidArgumentError as err:
                name = features["image/filename"].numpy().decode(errors="replace")
                return f'record {index} "{name}": {_tf_message(err)}'
    return None


def _raise_for_shards(err: Any, tfrecord_dir: str | Path) -> NoReturn:
    """Raise the UserError for a failed read: the corrupt shard (found by its sha256), else the record that
    does not fit the schema, else TensorFlow's message."""
    import tensorflow as tf

    shards = Manifest.read(tfrecord_dir).shard_files(tfrecord_dir, verify="sha256")  # raises if one is corrupt
    problem = schema_problem(shards) if isinstance(err, tf.errors.InvalidArgumentError) else None
    if problem:
        raise UserError(f"{problem} (tensorflow/models' ImageNet schema)") from None
    raise UserError(f"{tfrecord_dir}: reading the shards failed: {_tf_message(err)}") from err


def _tf_message(err: Any) -> str:
    """TensorFlow's error text without its internal prefixes (``{{function_node ...}}``, the iterator's path)."""
    text = first_line(err)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:\w+\]( name: \S*)?\s*$", "", text)  # an eager op's suffix
    return re.sub(r"^Error in user-defined function passed to .*? transformation with iterator: \S+: ", "", text)


def decode_image(jpeg_bytes: Any, *, size: tuple[int, int] | None = None, grayscale: bool = False,
                 antialias: bool = True) -> tf.Tensor:
    """The reusable decode step: JPEG bytes -> ``uint8 HxWxC`` (RGB, or 1-channel luma), optionally resized.

    Resizing squashes to ``size`` (no crop) with ``tf.image.resize`` and rounds back to uint8;
    ``antialias`` (default on) matters when shrinking a lot, e.g. to 32x32 for LeNet-5.
    """
    import tensorflow as tf

    image = tf.io.decode_jpeg(jpeg_bytes, channels=3, dct_method="INTEGER_ACCURATE")
    if grayscale:
        image = tf.image.rgb_to_grayscale(image)
    if size is not None:
        image = tf.image.resize(image, size, method="bilinear", antialias=antialias)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image


def decoded_dataset(tfrecord_dir: str | Path, *, size: tuple[int, int] | None = None, grayscale: bool = False,
                    classes: Iterable[int] | None = None, antialias: bool = True,
                    verify: str = "size") -> tf.data.Dataset:
    """``tf.data.Dataset`` of single ``(uint8 image, int32 label)`` pairs, unbatched, labels 0-based.

    ``classes`` keeps only those labels (0-based; filtered before decoding, so skipped images cost
    only their parse).  Sizes differ per image unless ``size`` is given.  Used by LeNet-5 on ImageNet.
    """
    import tensorflow as tf

    ds, manifest = records(tfrecord_dir, verify=verify)
    wanted = None if classes is None else tf.constant(sorted(set(int(c) for c in classes)), tf.int32)

    def parse(serialized: Any) -> tuple[Any, Any]:
        features = parse_example(serialized)
        return features["image/encoded"], tf.cast(manifest.zero_based(features["image/class/label"]), tf.int32)

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if wanted is not None:
        ds = ds.filter(lambda _, label: tf.reduce_any(tf.equal(wanted, label)))
    ds = ds.map(lambda jpeg, label: (decode_image(jpeg, size=size, grayscale=grayscale, antialias=antialias), label),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds


