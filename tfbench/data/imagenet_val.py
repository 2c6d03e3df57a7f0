"""ImageNet-2012 validation: folder layouts, label sources, the embedded sample, conversion to TFRecords.

Course exercise 4.7 (a TFRecord of ImageNet2012 val).  The command on top of it is
``python -m tfbench.imagenet`` (``convert``, ``inspect``, ``eval``).

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

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from tfbench.data import labels
from tfbench.data.example import Source
from tfbench.data.manifest import Manifest
from tfbench.data.mnist import DigitData
from tfbench.plumbing import paths
from tfbench.plumbing.errors import UserError
from tfbench.plumbing.files import read_text

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
    path = paths.shipped("datasets", "imagenet", BUNDLED_VAL_LABELS)
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
        ids = [int(line) for line in read_text(ground_truth, "--labels").split()]
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
        with open(csv_path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                number = VAL_NAME.match(row["ImageId"] + ".JPEG")
                synset = row["PredictionString"].split()[0]
                if not number or not SYNSET_DIR.match(synset):
                    raise UserError(f"{csv_path}: unexpected row {row}")
                out[int(number.group(1))] = synset
    except UnicodeDecodeError:
        read_text(csv_path, "--labels")  # raises, naming the first byte that is not UTF-8
        raise
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
    words = read_text(path, "--labels").split()
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
    from tfbench.data import images
    from tfbench.plumbing import files

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
    from tfbench.data.manifest import Manifest

    out = Path(logdir) / "imagenet" / "sample-tfrecords"
    try:
        Manifest.read(out)
        return out
    except UserError:
        pass
    src = embedded_sample(Path(logdir) / "imagenet" / "sample-val")
    convert(src, out, num_shards=2, workers=1, progress=progress)
    return out


def convert(src: str | Path, out: str | Path, *, num_shards: int = 128, workers: int | None = None,
            labels_path: str | Path | None = None, label_offset: int = 0, progress: bool = True) -> Manifest:
    """Find the images of ``src`` with their labels and write them as TFRecord shards into ``out``."""
    from tfbench.data import writer

    sources, origin = find_sources(src, labels_path=labels_path, label_offset=label_offset)
    metadata = {"source": str(src), "label_source": origin, "label_convention": CONVENTIONS[label_offset],
                "created_by": "python -m tfbench.imagenet convert"}
    return writer.write_shards(sources, out, num_shards=num_shards, workers=workers, metadata=metadata,
                                 progress=progress)


def class_counts(tfrecord_dir: str | Path) -> Counter:
    """How many images of each (0-based) class the shards hold, read from the records themselves."""
    import tensorflow as tf

    from tfbench.data import reader



    ds, manifest = reader.records(tfrecord_dir)
    first = int(manifest.first_label)
    ds = ds.map(lambda r: tf.io.parse_single_example(r, {"image/class/label": tf.io.FixedLenFeature([], tf.int64)})[
        "image/class/label"], num_parallel_calls=tf.data.AUTOTUNE)
    counts: Counter = Counter()
    for batch in reader.iterate(ds.batch(1024), tfrecord_dir):
        counts.update(int(v) - first for v in batch.numpy())
    return counts


def parse_classes(text: str) -> list[int]:
    """``"0,1,...,9"`` or ``"0-9"`` -> ten distinct 0-based ImageNet class indices."""
    try:
        if "-" in text:
            first, last = (int(v) for v in text.split("-"))
            classes = list(range(first, last + 1))
        else:
            classes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        classes = []
    if len(classes) != 10 or len(set(classes)) != 10 or min(classes) < 0 or max(classes) > 999:
        raise UserError(f"--classes must name 10 distinct ImageNet classes in 0..999 (e.g. 0-9 or "
                        f"0,1,...,9) for LeNet-5's 10 outputs, got {text!r}")
    return classes


def load_classes(folder: str | Path, classes: Sequence[int], size: int = 32) -> DigitData:
    """Ten ImageNet classes from ``python -m tfbench.imagenet convert`` shards, small and gray like digits (LeNet-5).

    The same reader VGG19 uses (:func:`tfbench.data.reader.decoded_dataset`), here decoding to
    grayscale ``size`` x ``size``; labels become 0..9 in the order of ``classes``; a fixed
    stratified 20% (at least one image per class) is held out.
    """
    from sklearn.model_selection import train_test_split

    from tfbench.data import reader



    ds = reader.decoded_dataset(folder, size=(size, size), grayscale=True, classes=classes)
    images, labels = [], []
    for image, label in reader.iterate(ds, folder):
        images.append(image.numpy())
        labels.append(int(label))
    counts = {c: labels.count(c) for c in classes}
    if min(counts.values()) < 2:
        raise UserError(f"{folder}: need at least 2 images of each chosen class, found {counts}")
    x = np.stack(images).astype(np.float32) / 255.0
    y = np.array([list(classes).index(label) for label in labels], np.int64)
    test_size = max(len(classes), round(0.2 * len(y)))
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, stratify=y, random_state=0)
    source = (f"ImageNet val TFRecords at {folder}: classes {list(classes)} as 0..9, "
              f"grayscale {size}x{size}")
    return DigitData(x_train, y_train, x_test, y_test, source)
