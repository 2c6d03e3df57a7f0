"""ImageNet-2012 validation: folder layouts, label sources, and the ``convert``/``inspect``/``eval`` CLI.

Course exercise 4.7 (a TFRecord of ImageNet2012 val), with 4.5/4.6/5.4 on the way (loaders,
crops, normalisation).  Run::

    python -m tfbench.imagenet convert                      # the embedded sample -> logs/imagenet/sample-tfrecords
    python -m tfbench.imagenet convert --src /data/val --out /data/val-tfrecords --shards 128
    python -m tfbench.imagenet inspect [DIR]                # counts per class + TensorBoard images
    python -m tfbench.imagenet eval [DIR] --weights vgg19.h5  # VGG19 top-1/top-5 (random weights without)

Source layouts (``--src``): the raw val folder (``ILSVRC2012_val_00000001.JPEG`` ...
``_00050000.JPEG``), or one subfolder per synset (``n01440764/*.JPEG``).  For the raw folder,
the label of image *i* comes from, in order of preference:

1. the bundled 50,000-line synset list (``datasets/imagenet/``, line *i* is image *i*): the default;
2. the devkit (``--labels ILSVRC2012_devkit_t12``): ``ILSVRC2012_validation_ground_truth.txt``
   holds *devkit ids* 1..1000, mapped to synsets through ``meta.mat`` (they are **not**
   sorted-synset indices: using them as class indices is the classic silent bug);
3. Kaggle's ``LOC_val_solution.csv`` (``--labels LOC_val_solution.csv``): first synset of each row.

The class index stored is the position of the synset among the 1,000 sorted synsets: 0..999
(Keras' convention, the default) or 1..1000 with ``--label-offset 1`` (tensorflow/models, where
0 is "background").  The manifest records which; the reader always hands out 0-based labels.

The embedded default (:func:`embedded_sample`) is a tiny folder in exactly the val layout, made
from scikit-image's bundled photos, each named after a real val image of its true class, so
the bundled synset list labels it correctly: ``chelsea`` is ``ILSVRC2012_val_00001341.JPEG``,
a tabby (n02123045).  ImageNet-1k has no "rocket" or "motorcycle": those two photos take the
closest classes (missile, moped); ``camera`` (a man with a camera on a tripod) is the tripod
class and is stored as a grayscale JPEG, as some real val images are.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfbench import labels, paths
from tfbench import preprocess as pp
from tfbench.errors import UserError, run_cli
from tfbench.tfrecord import Source

VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.(JPEG|jpeg|jpg|JPG)$")
SYNSET_DIR = re.compile(r"^n\d{8}$")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
VAL_SIZE = 50_000
BUNDLED_VAL_LABELS = "imagenet_2012_validation_synset_labels.txt"

#: scikit-image photo -> its ImageNet class (synset); the file is named after a val image of that class.
EMBEDDED_PHOTOS: dict[str, str] = {
    "chelsea": "n02123045",          # tabby
    "coffee": "n07920052",           # espresso
    "rocket": "n03773504",           # missile (closest class to a rocket on its pad)
    "motorcycle_left": "n03785016",  # moped (closest class to a motorcycle)
    "camera": "n04485082",           # tripod (grayscale photo)
}
CONVENTIONS = {
    0: {"name": "keras", "first_index": 0, "description": "0..999 over the sorted synsets (Keras)"},
    1: {"name": "tensorflow-models", "first_index": 1,
        "description": "1..1000 over the sorted synsets, 0 reserved for background (tensorflow/models)"},
}


# ----------------------------------------------------------------------------- labels


def bundled_val_synsets() -> list[str]:
    """Synset of val image i+1 for i in 0..49,999 (the shipped list)."""
    path = paths.IMAGENET_DIR / BUNDLED_VAL_LABELS
    try:
        synsets = path.read_text().split()
    except OSError as err:
        raise UserError(f"bundled val labels not found at {path}: {err.strerror}") from err
    if len(synsets) != VAL_SIZE:
        raise UserError(f"{path}: expected {VAL_SIZE} synsets, found {len(synsets)}")
    return synsets


def devkit_val_synsets(ground_truth: Path, meta_mat: Path) -> list[str]:
    """Val synsets from the devkit: ground-truth devkit ids mapped through ``meta.mat``'s ``synsets`` table."""
    import scipy.io

    try:
        meta = scipy.io.loadmat(str(meta_mat), squeeze_me=True)["synsets"]
        id_to_synset = {int(row["ILSVRC2012_ID"]): str(row["WNID"]) for row in meta}
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise UserError(f"{meta_mat}: not a readable ILSVRC2012 devkit meta.mat ({err})") from err
    try:
        ids = [int(line) for line in ground_truth.read_text().split()]
    except (OSError, ValueError) as err:
        raise UserError(f"{ground_truth}: expected one devkit id per line ({err})") from err
    missing = sorted(set(ids) - set(id_to_synset))
    if missing:
        raise UserError(f"{ground_truth}: devkit ids {missing[:5]} are not in {meta_mat}")
    return [id_to_synset[i] for i in ids]


def kaggle_val_synsets(csv_path: Path) -> dict[int, str]:
    """``{image number: synset}`` from Kaggle's ``LOC_val_solution.csv`` (first synset of each row)."""
    out: dict[int, str] = {}
    try:
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                number = VAL_NAME.match(row["ImageId"] + ".JPEG")
                synset = row["PredictionString"].split()[0]
                if not number or not SYNSET_DIR.match(synset):
                    raise UserError(f"{csv_path}: unexpected row {row}")
                out[int(number.group(1))] = synset
    except (OSError, KeyError, IndexError) as err:
        raise UserError(f"{csv_path}: not a Kaggle LOC_val_solution.csv (ImageId,PredictionString): {err}") from err
    return out


def val_synsets(labels_path: str | Path | None) -> tuple[dict[int, str], str]:
    """``{val image number (1-based): synset}`` and a description of where it came from."""
    if labels_path is None:
        return {i + 1: s for i, s in enumerate(bundled_val_synsets())}, f"bundled {BUNDLED_VAL_LABELS}"
    path = Path(labels_path)
    if path.is_dir():  # devkit folder
        gts = list(path.rglob("ILSVRC2012_validation_ground_truth.txt"))
        metas = list(path.rglob("meta.mat"))
        if not gts or not metas:
            raise UserError(f"{path}: expected a devkit with data/ILSVRC2012_validation_ground_truth.txt and "
                            "data/meta.mat")
        synsets = devkit_val_synsets(gts[0], metas[0])
        return {i + 1: s for i, s in enumerate(synsets)}, f"devkit {gts[0]} via {metas[0]}"
    if not path.exists():
        raise UserError(f"--labels {path}: no such file or folder")
    if path.suffix.lower() == ".csv":
        return kaggle_val_synsets(path), f"kaggle {path}"
    if path.name == "ILSVRC2012_validation_ground_truth.txt":
        meta = path.parent / "meta.mat"
        if not meta.exists():
            raise UserError(f"{path} holds devkit ids; meta.mat must sit beside it to map them to synsets")
        synsets = devkit_val_synsets(path, meta)
        return {i + 1: s for i, s in enumerate(synsets)}, f"devkit {path} via {meta}"
    words = path.read_text().split()
    if not all(SYNSET_DIR.match(w) for w in words[:10]):
        raise UserError(f"{path}: expected one synset (nXXXXXXXX) per line")
    return {i + 1: s for i, s in enumerate(words)}, f"synset list {path}"


# ----------------------------------------------------------------------------- source folders


def find_sources(src: str | Path, *, labels_path: str | Path | None = None,
                 label_offset: int = 0) -> tuple[list[Source], str]:
    """Every image of a val folder (raw or per-synset) with its label; and where the labels came from."""
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"--src {src}: no such folder")
    if label_offset not in CONVENTIONS:
        raise UserError(f"label offset must be 0 (Keras) or 1 (tensorflow/models), got {label_offset}")
    index = {synset: i for i, synset in enumerate(labels.synsets())}
    names = dict(labels.class_index())
    entries = sorted(src.iterdir())
    synset_dirs = [p for p in entries if p.is_dir() and SYNSET_DIR.match(p.name)]
    sources: list[Source] = []
    if synset_dirs:
        unknown = [p.name for p in synset_dirs if p.name not in index]
        if unknown:
            raise UserError(f"{src}: folders {unknown[:5]} are not ImageNet-1k synsets")
        for folder in synset_dirs:
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    sources.append(Source(str(path), index[folder.name] + label_offset, folder.name,
                                          names[folder.name]))
        origin = "per-synset folders"
    else:
        numbered = [(int(m.group(1)), p) for p in entries if p.is_file() and (m := VAL_NAME.match(p.name))]
        if numbered:
            table, origin = val_synsets(labels_path)
            for number, path in numbered:
                synset = table.get(number)
                if synset is None:
                    raise UserError(f"{path.name}: no label for image {number} in {origin}")
                if synset not in index:
                    raise UserError(f"{path.name}: label {synset} from {origin} is not an ImageNet-1k synset")
                sources.append(Source(str(path), index[synset] + label_offset, synset, names[synset]))
    if not sources:
        seen = ", ".join(p.name for p in entries[:5]) or "nothing"
        raise UserError(f"--src {src}: no ImageNet val images found (expected ILSVRC2012_val_XXXXXXXX.JPEG files "
                        f"or nXXXXXXXX/ synset folders; found {seen})")
    return sources, origin


def embedded_sample(dest: str | Path | None = None) -> Path:
    """Create (or reuse) the embedded sample in val layout under ``dest`` (default ``logs/imagenet/sample-val``).

    Deterministic: the same photos, names and JPEG bytes (PIL, quality 90) on every run.
    """
    from tfbench import files, images

    dest = Path(dest) if dest is not None else paths.DEFAULT_LOGDIR / "imagenet" / "sample-val"
    dest.mkdir(parents=True, exist_ok=True)
    val = bundled_val_synsets()
    for photo, synset in EMBEDDED_PHOTOS.items():
        number = val.index(synset) + 1  # the first real val image of this class
        path = dest / f"ILSVRC2012_val_{number:08d}.JPEG"
        if path.exists():
            continue
        with files.atomic_output(path) as tmp:
            images.save_jpeg(images.skimage_photo(photo), tmp, quality=90)
            tmp.chmod(0o644)
    return dest


def default_tfrecords(logdir: str | Path = paths.DEFAULT_LOGDIR, *, progress: bool = False) -> Path:
    """The embedded sample converted to TFRecords under ``<logdir>/imagenet/sample-tfrecords`` (made on demand)."""
    from tfbench import tfrecord

    out = Path(logdir) / "imagenet" / "sample-tfrecords"
    try:
        tfrecord.read_manifest(out)
        return out
    except UserError:
        pass
    src = embedded_sample(Path(logdir) / "imagenet" / "sample-val")
    convert(src, out, num_shards=2, workers=1, progress=progress)
    return out


# ----------------------------------------------------------------------------- commands


def convert(src: str | Path, out: str | Path, *, num_shards: int = 128, workers: int | None = None,
            labels_path: str | Path | None = None, label_offset: int = 0, progress: bool = True) -> dict[str, Any]:
    """Find the images of ``src`` with their labels and write them as TFRecord shards into ``out``."""
    from tfbench import tfrecord

    sources, origin = find_sources(src, labels_path=labels_path, label_offset=label_offset)
    metadata = {"source": str(src), "label_source": origin, "label_convention": CONVENTIONS[label_offset],
                "created_by": "python -m tfbench.imagenet convert"}
    return tfrecord.write_shards(sources, out, num_shards=num_shards, workers=workers, metadata=metadata,
                                 progress=progress)


def class_counts(tfrecord_dir: str | Path) -> Counter:
    """How many images of each (0-based) class the shards hold, read from the records themselves."""
    import tensorflow as tf

    from tfbench import tfrecord

    ds, manifest = tfrecord.records(tfrecord_dir)
    first = int(manifest.get("label_convention", {}).get("first_index", 0))
    ds = ds.map(lambda r: tf.io.parse_single_example(r, {"image/class/label": tf.io.FixedLenFeature([], tf.int64)})[
        "image/class/label"], num_parallel_calls=tf.data.AUTOTUNE)
    counts: Counter = Counter()
    for batch in tfrecord.iterate(ds.batch(1024), tfrecord_dir):
        counts.update(int(v) - first for v in batch.numpy())
    return counts


def inspect(tfrecord_dir: str | Path, *, logdir: str | Path = paths.DEFAULT_LOGDIR, examples: int = 4,
            recipe: str = "A-aspect", mode: str = "caffe") -> Path:
    """Print counts per class and a few examples; write them to TensorBoard (original, crop, normalised)."""
    from tfbench import summaries, tfrecord

    manifest = tfrecord.read_manifest(tfrecord_dir)
    print(f"{tfrecord_dir}: {tfrecord.manifest_summary(manifest)}")
    for item in manifest["skipped"]:
        print(f"  skipped {item['file']}: {item['reason']}")
    counts = class_counts(tfrecord_dir)
    print(f"{len(counts)} classes; images per class: min {min(counts.values())}, max {max(counts.values())}")
    for label, n in sorted(counts.items())[:20]:
        print(f"  {label:4d} {labels.synsets()[label]} {labels.class_name(label):24s} {n}")
    if len(counts) > 20:
        print(f"  ... ({len(counts) - 20} more classes)")
    spec = pp.MODES[mode]
    run = paths.run_dir(logdir, "imagenet")
    ds, _ = tfrecord.records(tfrecord_dir)
    for i, serialized in enumerate(ds.take(examples)):
        features = tfrecord.parse_example(serialized)
        original = tfrecord.decode_image(features["image/encoded"]).numpy()
        crop = pp.tf_decode_recipe(features["image/encoded"], recipe, size=spec.size)
        normalised = pp.tf_normalise(crop[None], spec, channel_order="RGB")[0].numpy()
        viewed = pp.denormalise(normalised, spec, channel_order="RGB")  # back to pixels: what the network sees
        label = int(features["image/class/label"]) - int(manifest.get("label_convention", {}).get("first_index", 0))
        name = features["image/filename"].numpy().decode()
        print(f"example {i}: {name} {original.shape[0]}x{original.shape[1]} label {label} "
              f"({labels.class_name(label)}); after {mode} normalisation: min {normalised.min():.1f} "
              f"max {normalised.max():.1f} mean {normalised.mean():.2f}")
        summaries.write_images(run, {f"{i}_{name}/original": original,
                                     f"{i}_{name}/crop_{recipe}": np.clip(crop.numpy(), 0, 255).astype(np.uint8),
                                     f"{i}_{name}/normalised_{mode}_denormalised": viewed})
    print(f"TensorBoard images: {run}  (tensorboard --logdir {logdir})")
    return run


def evaluate(tfrecord_dir: str | Path, *, weights_path: str | None = None, allow_pickle: bool = False,
             seed: int = 0, batch_size: int = 16, recipe: str = "A-aspect", limit: int | None = None,
             logdir: str | Path = paths.DEFAULT_LOGDIR) -> dict[str, Any]:
    """Run VGG19 over the shards; return top-1/top-5 accuracy (chance level with random weights)."""
    import tensorflow as tf
    from tqdm import tqdm

    from tfbench import summaries, tfrecord, vgg19, weights

    loaded = weights.load(weights_path, allow_pickle=allow_pickle) if weights_path else weights.random(seed)
    spec = loaded.input_spec
    model = vgg19.VGG19Module(loaded.layers, input_size=spec.size)
    forward = model.as_function()
    manifest = tfrecord.read_manifest(tfrecord_dir)
    ds = tfrecord.make_dataset(tfrecord_dir, batch_size=batch_size, recipe=recipe, spec=spec)
    total = manifest["written"] if limit is None else min(limit, manifest["written"])
    seen = top1 = top5 = 0
    with tqdm(total=total, unit="img", desc="VGG19 eval") as bar:
        for images, label_batch in tfrecord.iterate(ds, tfrecord_dir):
            if seen >= total:
                break
            images, label_batch = images[:total - seen], label_batch[:total - seen]
            logits = forward(images)
            best = tf.math.top_k(logits, k=5).indices.numpy()
            truth = label_batch.numpy()
            top1 += int(np.sum(best[:, 0] == truth))
            top5 += int(np.sum(np.any(best == truth[:, None], axis=1)))
            seen += len(truth)
            bar.update(len(truth))
    result = {"tfrecords": str(tfrecord_dir), "weights": loaded.source, "images": seen, "recipe": recipe,
              "input_spec": {"channel_order": spec.channel_order, "mean": list(spec.mean), "std": list(spec.std)},
              "top1": top1 / max(seen, 1), "top5": top5 / max(seen, 1)}
    run = paths.run_dir(logdir, "imagenet")
    from tfbench.files import write_json

    write_json(run / "eval.json", result)
    summaries.write_scalars(run, {"eval/top1": result["top1"], "eval/top5": result["top5"]}, step=0)
    print(f"VGG19 ({loaded.source}) on {seen} images, recipe {recipe}: "
          f"top-1 {result['top1']:.3f}, top-5 {result['top5']:.3f}")
    if loaded.is_random:
        print("(random weights: expect chance level, 0.001 / 0.005; pass --weights for real accuracy)")
    print(f"results: {run / 'eval.json'}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``convert``, ``inspect`` or ``eval`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tfbench.imagenet", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", default=str(paths.DEFAULT_LOGDIR), help="where runs go (default: logs)")
    common = argparse.ArgumentParser(add_help=False)  # --logdir also accepted after the command
    common.add_argument("--logdir", default=argparse.SUPPRESS, help="where runs go (default: logs)")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", parents=[common], help="write a val folder as TFRecord shards with a manifest")
    c.add_argument("--src", help="val folder (raw or per-synset); default: the embedded sample")
    c.add_argument("--out", help="output folder (default with the sample: <logdir>/imagenet/sample-tfrecords)")
    c.add_argument("--shards", type=int, default=128, help="number of shards (capped at the image count)")
    c.add_argument("--workers", type=int, default=None, help="writer processes (default: one per core)")
    c.add_argument("--labels", help="devkit folder, ILSVRC2012_validation_ground_truth.txt, LOC_val_solution.csv "
                                    "or a synset list (default: the bundled list)")
    c.add_argument("--label-offset", type=int, choices=(0, 1), default=0,
                   help="0: classes 0..999 (Keras, default); 1: 1..1000 (tensorflow/models)")
    for name, text in (("inspect", "counts per class, a few examples, TensorBoard images"),
                       ("eval", "VGG19 top-1/top-5 over the shards")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("dir", nargs="?", help="folder of shards (default: the embedded sample, made on demand)")
        p.add_argument("--recipe", default="A-aspect", choices=tuple(pp.RECIPES), help="crop recipe")
    sub.choices["inspect"].add_argument("--examples", type=int, default=4, help="examples to show")
    sub.choices["inspect"].add_argument("--mode", default="caffe", choices=("caffe", "tf", "torch"))
    e = sub.choices["eval"]
    e.add_argument("--weights", help="VGG19 weight file (.npz, .h5, .npy, .mat); default: seeded random")
    e.add_argument("--allow-pickle", action="store_true", help="allow .npy weight files (runs code from the file!)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--limit", type=int, help="stop after this many images")
    ns = parser.parse_args(argv)

    if ns.command == "convert":
        if ns.src is None:
            src = embedded_sample(Path(ns.logdir) / "imagenet" / "sample-val")
            out = Path(ns.out) if ns.out else Path(ns.logdir) / "imagenet" / "sample-tfrecords"
            print(f"no --src: using the embedded sample in {src}")
        else:
            if not ns.out:
                raise UserError("--out is required with --src")
            src, out = Path(ns.src), Path(ns.out)
        if ns.shards < 1:
            raise UserError(f"--shards must be at least 1, got {ns.shards}")
        from tfbench import tfrecord

        manifest = convert(src, out, num_shards=ns.shards, workers=ns.workers, labels_path=ns.labels,
                           label_offset=ns.label_offset)
        print(f"{out}: {tfrecord.manifest_summary(manifest)}")
        print(f"labels from {manifest['label_source']}, {manifest['label_convention']['description']}")
        return 0
    directory = Path(ns.dir) if ns.dir else default_tfrecords(ns.logdir)
    if ns.command == "inspect":
        inspect(directory, logdir=ns.logdir, examples=ns.examples, recipe=ns.recipe, mode=ns.mode)
    else:
        evaluate(directory, weights_path=ns.weights, allow_pickle=ns.allow_pickle, seed=ns.seed,
                 batch_size=ns.batch_size, recipe=ns.recipe, limit=ns.limit, logdir=ns.logdir)
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
