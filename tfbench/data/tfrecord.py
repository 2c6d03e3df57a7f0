"""TFRecord files of ImageNet-style examples: schema, sharded atomic writer with a manifest, tf.data reader.

Course exercise 4.7 (a TFRecord of ImageNet-2012 val).  A TFRecord file is a sequence of
length-prefixed, CRC-checked records; each record here is a serialized ``tf.train.Example``
with the feature keys tensorflow/models' ImageNet readers use (:data:`FEATURES`), so shards
written here load there and theirs load here.

Writer (:func:`write_shards`, run by ``python -m tfbench.imagenet convert``):
- examples are split into contiguous shards ``validation-00000-of-00128``; a pool of processes
  decodes and checks the images of each shard (the expensive part; ``spawn``, since a forked
  TensorFlow process can hang), and the main process writes each shard as soon as it is ready,
  under a progress bar;
- each shard is written under a temporary name and renamed when complete; its record count,
  size and sha256 go to ``.progress/<shard>.json`` first, so a rerun after a crash skips the
  shards that are complete and intact and writes the rest;
- dirty data: non-JPEG bytes behind a ``.JPEG`` name (PNG, GIF...) and CMYK JPEGs are
  re-encoded to RGB JPEG; grayscale JPEGs are kept as they are (the reader decodes them to 3
  channels); zero-byte and undecodable files are skipped.  Both lists are printed and stored in
  ``manifest.json`` by file name, and the counts always reconcile: written + skipped = found.

Reader (:func:`make_dataset`): checks every shard against the manifest (present, same size;
optionally same sha256) and names the shard that is not (:func:`iterate` does the same when a
record turns out corrupt while reading, and the total count is asserted at the end); then interleaves the shards, parses
and decodes in parallel (``decode_and_crop_jpeg`` for the crop-first recipes), resizes in-graph
to uint8, batches, normalises each batch in one XLA-compiled loop and prefetches, with
``AUTOTUNE`` everywhere (and tf.data's autotuning model off: see :func:`make_dataset`).  :func:`decoded_dataset` is the
reusable decode-and-resize step (e.g. 32x32 grayscale for LeNet-5).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import multiprocessing
import os
import pickle
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from tfbench.errors import UserError
from tfbench.files import atomic_output, write_json

MANIFEST = "manifest.json"
PROGRESS_DIR = ".progress"
PREPARED_SUFFIX = ".prepared.pickle"
FORMAT = "tfbench-imagenet-tfrecord/1"
REENCODE_QUALITY = 95

#: Feature keys and types of one example (tensorflow/models ``build_imagenet_data.py`` schema).
FEATURE_KEYS = ("image/encoded", "image/format", "image/class/label", "image/class/synset", "image/class/text",
                "image/height", "image/width", "image/channels", "image/colorspace", "image/filename")


@dataclass(frozen=True)
class Source:
    """One image to write: its file and its label."""

    path: str
    label: int
    synset: str
    text: str

    @property
    def filename(self) -> str:
        """The base name stored in ``image/filename``."""
        return os.path.basename(self.path)


def shard_name(split: str, index: int, count: int) -> str:
    """``validation-00003-of-00128``: tensorflow/models' shard naming."""
    return f"{split}-{index:05d}-of-{count:05d}"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- one image -> one Example


class SkipImage(Exception):
    """This file cannot be written (zero bytes, undecodable): skip it and say why."""


def clean_jpeg(path: str) -> tuple[bytes, int, int, str | None]:
    """JPEG bytes ready to store, height, width, and what was re-encoded (None: original bytes kept).

    PIL decodes every file fully, so truncated and corrupt files are caught here, not at training time.
    """
    from PIL import Image as PILImage

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise SkipImage(f"unreadable: {err.strerror}") from err
    if not data:
        raise SkipImage("zero-byte file")
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            img.load()
            fmt, mode, (width, height) = img.format, img.mode, img.size
            if fmt == "JPEG" and mode in ("RGB", "L"):
                return data, height, width, None
            rgb = img.convert("RGB")
    except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
        from tfbench.data.images import pil_message

        raise SkipImage(f"corrupt: {type(err).__name__}: {pil_message(err, path)}") from err
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=REENCODE_QUALITY)
    return out.getvalue(), height, width, f"{fmt} {mode} re-encoded to RGB JPEG"


def make_example(source: Source, jpeg: bytes, height: int, width: int) -> bytes:
    """The serialized ``tf.train.Example`` of one image (tensorflow/models feature keys)."""
    import tensorflow as tf

    def b(v: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    features = {
        "image/encoded": b(jpeg), "image/format": b(b"JPEG"),
        "image/class/label": i(source.label), "image/class/synset": b(source.synset.encode()),
        "image/class/text": b(source.text.encode()),
        "image/height": i(height), "image/width": i(width),
        "image/channels": i(3), "image/colorspace": b(b"RGB"),  # grayscale JPEGs decode to 3 channels
        "image/filename": b(source.filename.encode()),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # deterministic: protobuf map order otherwise varies between processes, and so would the checksums
    return example.SerializeToString(deterministic=True)


# ----------------------------------------------------------------------------- writer


def _prepare_shard(sources: list[Source]) -> list[tuple[Source, bytes | None, int, int, str | None]]:
    """Check and clean every image of one shard (runs in a worker process; no TensorFlow needed there).

    Returns ``(source, jpeg or None, height, width, note)``: a None jpeg means skipped, note says why.
    """
    out = []
    for source in sources:
        try:
            jpeg, height, width, note = clean_jpeg(source.path)
        except SkipImage as why:
            out.append((source, None, 0, 0, str(why)))
            continue
        out.append((source, jpeg, height, width, note))
    return out


def _prepare_shard_to_file(sources: list[Source], path: str) -> str:
    """:func:`_prepare_shard` in a worker process, the result pickled to ``path`` (returned).

    Only the short path goes back through the pool's result pipe: a worker stopped by Ctrl-C
    mid-message can then never leave the parent waiting on half a message.
    """
    with atomic_output(path) as tmp:
        tmp.write_bytes(pickle.dumps(_prepare_shard(sources), protocol=pickle.HIGHEST_PROTOCOL))
    return path


def _load_prepared(path: str) -> list[tuple[Source, bytes | None, int, int, str | None]]:
    """Read back (and delete) what :func:`_prepare_shard_to_file` wrote; it was written by this conversion."""
    prepared = pickle.loads(Path(path).read_bytes())  # noqa: S301 - our own worker's file, in our own folder
    Path(path).unlink()
    return prepared


def _worker_ignores_sigint() -> None:
    """Pool initializer: Ctrl-C reaches every process of the terminal's group; only the parent acts on it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Stop the workers now (Ctrl-C or an error): cancel what has not started, terminate what has."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


def _write_shard(out_dir: str, name: str, prepared: list[tuple[Source, bytes | None, int, int, str | None]]
                 ) -> dict[str, Any]:
    """Write one shard atomically from prepared images; return its record for the manifest."""
    import tensorflow as tf

    out = Path(out_dir)
    written, skipped, reencoded = 0, [], []
    with atomic_output(out / name) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for source, jpeg, height, width, note in prepared:
                if jpeg is None:
                    skipped.append({"file": source.filename, "reason": note})
                    continue
                if note:
                    reencoded.append({"file": source.filename, "reason": note})
                writer.write(make_example(source, jpeg, height, width))
                written += 1
        tmp.chmod(0o644)
        record = {"name": name, "count": written, "bytes": tmp.stat().st_size, "sha256": sha256_file(tmp),
                  "sources": [s.filename for s, *_ in prepared], "plan": _plan_digest([s for s, *_ in prepared]),
                  "skipped": skipped, "reencoded": reencoded}
        write_json(out / PROGRESS_DIR / f"{name}.json", record)  # before the rename: a shard never lacks it
    return record


def _plan_digest(sources: list[Source]) -> str:
    """sha256 of what a shard should hold (files, labels, synsets, names): a changed label means rewrite."""
    plan = [[s.filename, s.label, s.synset, s.text, REENCODE_QUALITY] for s in sources]
    return hashlib.sha256(json.dumps(plan).encode()).hexdigest()


def _completed(out: Path, name: str, sources: list[Source]) -> dict[str, Any] | None:
    """The progress record of a shard a previous run finished, if the shard is intact and for these sources."""
    shard, progress = out / name, out / PROGRESS_DIR / f"{name}.json"
    if not shard.exists() or not progress.exists():
        return None
    try:
        record = json.loads(progress.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("plan") != _plan_digest(sources):
        return None
    if shard.stat().st_size != record.get("bytes") or sha256_file(shard) != record.get("sha256"):
        return None
    return record


def plan_shards(sources: Sequence[Source], num_shards: int, split: str) -> list[tuple[str, list[Source]]]:
    """Contiguous, nearly equal chunks of ``sources`` (in order), named ``split-i-of-n``."""
    n = len(sources)
    return [(shard_name(split, i, num_shards), list(sources[i * n // num_shards:(i + 1) * n // num_shards]))
            for i in range(num_shards)]


def write_shards(sources: Sequence[Source], out_dir: str | Path, *, num_shards: int = 128, workers: int | None = None,
                 split: str = "validation", metadata: dict[str, Any] | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Write ``sources`` as ``num_shards`` TFRecord shards plus ``manifest.json``; resume what a crash left.

    ``num_shards`` is capped at the number of images (no empty shards).  ``workers`` processes
    (default: one per core; 1 writes in this process).  Returns the manifest.
    """
    from tqdm import tqdm

    if not sources:
        raise UserError("no images to write")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, expected a folder")
    num_shards = max(1, min(int(num_shards), len(sources)))
    plan = plan_shards(sources, num_shards, split)
    names = {name for name, _ in plan}
    out.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in out.glob(f"{split}-*-of-*") if p.name not in names)
    if foreign:
        raise UserError(f"{out} holds shards of another conversion ({foreign[0]} ...); "
                        f"write to an empty folder or delete them")
    for stale in out.glob(f".{split}-*.partial"):  # temporary files of a run that crashed
        stale.unlink()
    (out / PROGRESS_DIR).mkdir(exist_ok=True)
    for stale in (out / PROGRESS_DIR).glob(f"*{PREPARED_SUFFIX}*"):  # images a worker prepared before a crash
        stale.unlink()
    (out / MANIFEST).unlink(missing_ok=True)  # a manifest only exists when every shard does

    records: dict[str, dict[str, Any]] = {}
    todo = []
    for name, chunk in plan:
        done = _completed(out, name, chunk)
        if done is not None:
            records[name] = done
        else:
            todo.append((name, chunk))
    workers = max(1, workers or os.cpu_count() or 1)
    bar = tqdm(total=len(sources), initial=sum(len(r["sources"]) for r in records.values()), unit="img",
               desc=f"writing {len(todo)} of {num_shards} shards", disable=not progress)

    def finished(record: dict[str, Any]) -> None:
        records[record["name"]] = record
        bar.update(len(record["sources"]))
        for item in record["skipped"]:
            bar.write(f"skipped {item['file']}: {item['reason']}")
        for item in record["reencoded"]:
            bar.write(f"re-encoded {item['file']}: {item['reason']}")

    try:
        if workers == 1 or len(todo) <= 1:
            for name, chunk in todo:
                finished(_write_shard(str(out), name, _prepare_shard(chunk)))
        else:
            # Workers decode and clean the images (the expensive part); this process writes each shard
            # as soon as its images are ready.  "spawn": a fork of a process running TensorFlow can hang.
            # Ctrl-C: the workers start with SIGINT blocked (the mask is inherited through spawn), then
            # ignore it; the parent alone gets KeyboardInterrupt and terminates them (_stop_pool) instead
            # of waiting for them, so an interrupt at any moment, even during start-up, ends at once.
            context = multiprocessing.get_context("spawn")
            pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                                          initializer=_worker_ignores_sigint)
            try:
                old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                try:
                    futures = {pool.submit(_prepare_shard_to_file, chunk,
                                           str(out / PROGRESS_DIR / f"{name}{PREPARED_SUFFIX}")): name
                               for name, chunk in todo}
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
                for future in cf.as_completed(futures):
                    finished(_write_shard(str(out), futures[future], _load_prepared(future.result())))
            except BaseException:
                _stop_pool(pool)
                raise
            pool.shutdown()
    finally:
        bar.close()

    shards = [records[name] for name, _ in plan]
    skipped = [item for r in shards for item in r["skipped"]]
    reencoded = [item for r in shards for item in r["reencoded"]]
    written = sum(r["count"] for r in shards)
    if written + len(skipped) != len(sources):
        raise RuntimeError(f"counts do not reconcile: {written} written + {len(skipped)} skipped != {len(sources)}")
    if written == 0:
        raise UserError(f"none of the {len(sources)} images could be read (first: {skipped[0]['file']}: "
                        f"{skipped[0]['reason']})")
    manifest = {
        "format": FORMAT, "split": split, "num_shards": num_shards,
        "found": len(sources), "written": written, "skipped": skipped, "reencoded": reencoded,
        "channel_order": "RGB", "image_format": "JPEG",
        **(metadata or {}),
        "shards": [{"name": r["name"], "count": r["count"], "bytes": r["bytes"], "sha256": r["sha256"]}
                   for r in shards],
    }
    write_json(out / MANIFEST, manifest)
    return manifest


# ----------------------------------------------------------------------------- reader


def read_manifest(tfrecord_dir: str | Path) -> dict[str, Any]:
    """The manifest of a folder of shards written by :func:`write_shards` (UserError if missing or broken)."""
    path = Path(tfrecord_dir) / MANIFEST
    if not Path(tfrecord_dir).is_dir():
        raise UserError(f"{tfrecord_dir}: no such folder of TFRecord shards")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise UserError(f"{path} not found: not a finished conversion (rerun `python -m tfbench.imagenet "
                        f"convert` to complete it)") from err
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot read the manifest: {err}") from err
    if manifest.get("format") != FORMAT:
        raise UserError(f"{path}: unknown manifest format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def shard_files(tfrecord_dir: str | Path, manifest: dict[str, Any] | None = None, *,
                verify: str = "size") -> list[str]:
    """The shard paths in manifest order, each checked: present and the right size (``verify="sha256"``: and hash)."""
    if verify not in ("none", "size", "sha256"):
        raise UserError(f"verify must be 'none', 'size' or 'sha256', got {verify!r}")
    manifest = manifest or read_manifest(tfrecord_dir)
    paths = []
    for shard in manifest["shards"]:
        path = Path(tfrecord_dir) / shard["name"]
        if not path.exists():
            raise UserError(f"shard {path} is missing (the manifest lists {shard['count']} images in it)")
        if verify != "none" and path.stat().st_size != shard["bytes"]:
            raise UserError(f"shard {path} has {path.stat().st_size} bytes, the manifest says {shard['bytes']}: "
                            "truncated or replaced; rerun convert into a fresh folder")
        if verify == "sha256" and sha256_file(path) != shard["sha256"]:
            raise UserError(f"shard {path} does not match its sha256 in the manifest: corrupt")
        paths.append(str(path))
    return paths


def parse_example(serialized, keys: Sequence[str] | None = None):
    """The decoder stage: serialized ``tf.train.Example`` -> dict of tensors (scalar features).

    ``keys``: parse only these (a reader that needs the pixels and the label skips the rest).
    """
    import tensorflow as tf

    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/class/synset": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    }
    if keys is not None:
        spec = {key: spec[key] for key in keys}
    return tf.io.parse_single_example(serialized, spec)


def records(tfrecord_dir: str | Path, *, verify: str = "size", deterministic: bool = True):
    """Serialized examples of every shard, interleaved in parallel; the manifest's total count is asserted."""
    import tensorflow as tf

    manifest = read_manifest(tfrecord_dir)
    files = shard_files(tfrecord_dir, manifest, verify=verify)
    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16), block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return ds.apply(tf.data.experimental.assert_cardinality(manifest["written"])), manifest


def _zero_based(labels, manifest: dict[str, Any]):
    first = int(manifest.get("label_convention", {}).get("first_index", 0))
    return labels - first if first else labels


#: ``make_dataset(resizer=...)``: "auto" is "fused" for the crop-first recipes, else "tf".
RESIZERS = ("auto", "fused", "tf", "cv2")


def make_dataset(tfrecord_dir: str | Path, *, batch_size: int, recipe: str = "A-aspect", spec=None,
                 antialias: bool = False, fast: bool | None = None, resizer: str = "auto", verify: str = "size",
                 deterministic: bool = True, drop_remainder: bool = False, with_filenames: bool = False,
                 xla_normalise: bool = True, autotune: bool = False):
    """``tf.data.Dataset`` of ``(images float32 NxSxSx3, labels int32)`` ready for a network expecting ``spec``.

    Labels are 0-based (Keras convention) whatever the shards store (the manifest says which).
    ``spec`` is a ``tfbench.data.preprocess.InputSpec`` (default: Keras caffe mode, VGG19's);
    decoded pixels are RGB, :func:`tfbench.data.preprocess.tf_normalise` reorders them for the spec.
    ``fast``: decode only the crop window (``decode_and_crop_jpeg``); default: for the crop-first
    recipes B and A-window only, because A-aspect's exact fast path needs ``crop_and_resize``,
    which costs more on CPU than the decoding it saves.  ``resizer``: ``"fused"`` resizes, rounds
    and normalises each crop window in one C++ op (:mod:`tfbench.data.resize_normalise`; the same
    numbers as ``"tf"``, crop-first recipes only, built on first use, TensorFlow's ops if it cannot
    be built); ``"tf"``: ``tf.image.resize``, uint8, and per batch the XLA-compiled
    normalisation; ``"cv2"``: OpenCV's resize through ``tf.numpy_function`` (the NumPy recipe's
    pixels, but the Python call costs more than the faster resize saves, and the dataset cannot be
    serialized); ``"auto"`` (default): ``"fused"`` for the crop-first recipes without antialiasing,
    else ``"tf"``.
    ``with_filenames`` adds a third element, the stored file names.

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
    from tfbench.data import resize_normalise

    spec = spec or pp.CAFFE
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    if resizer not in RESIZERS:
        raise UserError(f"resizer must be one of {', '.join(RESIZERS)}, got {resizer!r}")
    fused = resizer == "fused" or (resizer == "auto" and recipe in pp.CROP_FIRST and not antialias)
    if fused and (recipe not in pp.CROP_FIRST or antialias):
        raise UserError(f"resizer='fused' resizes the crop window without antialiasing: it needs a crop-first "
                        f"recipe ({', '.join(pp.CROP_FIRST)}) and antialias=False, got {recipe!r}, {antialias}")
    ds, manifest = records(tfrecord_dir, verify=verify, deterministic=deterministic)

    def cv2_recipe(pixels):
        return pp.recipe_pixels(pixels, recipe, size=spec.size, backend="cv2")

    keys = ("image/encoded", "image/class/label") + (("image/filename",) if with_filenames else ())

    def decode(serialized):
        features = parse_example(serialized, keys)
        if fused:  # already normalised: see tfbench.data.resize_normalise
            window = pp.tf_decode_window(features["image/encoded"], recipe, size=spec.size, fast=fast is not False)
            image = resize_normalise.resize_normalise(window, spec.size, spec, channel_order="RGB")
        elif resizer in ("tf", "auto"):
            image = pp.tf_to_uint8(pp.tf_decode_recipe(features["image/encoded"], recipe, size=spec.size,
                                                       antialias=antialias, fast=fast))
        else:
            pixels = tf.io.decode_jpeg(features["image/encoded"], channels=3, dct_method="INTEGER_ACCURATE")
            image = tf.numpy_function(cv2_recipe, [pixels], tf.uint8, stateful=False)
            image = tf.ensure_shape(image, [spec.size, spec.size, 3])
        label = tf.cast(_zero_based(features["image/class/label"], manifest), tf.int32)
        return (image, label, features["image/filename"]) if with_filenames else (image, label)

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=deterministic)

    if not fused:
        normalise_pixels = pp.tf_normaliser(spec, channel_order="RGB", xla=xla_normalise)

        def normalise(images, *labels_and_filenames):
            return (normalise_pixels(images), *labels_and_filenames)

        ds = ds.map(normalise, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.autotune.enabled = autotune
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def iterate(dataset, tfrecord_dir: str | Path) -> Iterable[Any]:
    """Iterate ``dataset`` read from ``tfrecord_dir``; a read error becomes a UserError naming the bad shard.

    TensorFlow reports a damaged record as "corrupted record at 12" without the file; on such an
    error we check every shard's sha256 against the manifest to say which one it is.
    """
    import tensorflow as tf

    try:
        yield from dataset
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.FailedPreconditionError) as err:
        shard_files(tfrecord_dir, verify="sha256")  # raises, naming the shard, if one is corrupt
        raise UserError(f"{tfrecord_dir}: reading the shards failed: {err.message.strip().splitlines()[0]}") from err


def decode_image(jpeg_bytes, *, size: tuple[int, int] | None = None, grayscale: bool = False,
                 antialias: bool = True):
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
                    classes: Iterable[int] | None = None, antialias: bool = True, verify: str = "size"):
    """``tf.data.Dataset`` of single ``(uint8 image, int32 label)`` pairs, unbatched, labels 0-based.

    ``classes`` keeps only those labels (0-based; filtered before decoding, so skipped images cost
    only their parse).  Sizes differ per image unless ``size`` is given.  Used by LeNet-5 on ImageNet.
    """
    import tensorflow as tf

    ds, manifest = records(tfrecord_dir, verify=verify)
    wanted = None if classes is None else tf.constant(sorted(set(int(c) for c in classes)), tf.int32)

    def parse(serialized):
        features = parse_example(serialized)
        return features["image/encoded"], tf.cast(_zero_based(features["image/class/label"], manifest), tf.int32)

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if wanted is not None:
        ds = ds.filter(lambda _, label: tf.reduce_any(tf.equal(wanted, label)))
    ds = ds.map(lambda jpeg, label: (decode_image(jpeg, size=size, grayscale=grayscale, antialias=antialias), label),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def manifest_summary(manifest: dict[str, Any]) -> str:
    """One line: shards, images found/written/skipped/re-encoded, label convention."""
    convention = manifest.get("label_convention", {}).get("name", "?")
    return (f"{manifest['num_shards']} shards, {manifest['found']} images found, {manifest['written']} written, "
            f"{len(manifest['skipped'])} skipped, {len(manifest['reencoded'])} re-encoded, labels: {convention}")

