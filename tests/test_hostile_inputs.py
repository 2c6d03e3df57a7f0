"""Hostile inputs are refused in one line before anything big is allocated: image and weight-array bombs,
impossible batch sizes, binary label files (each through the command, as a user meets it; exit 2, no traceback)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tfbench.data import example, imagenet_val, images, weights
from tfbench.plumbing.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
META = {"format": "tfbench-vgg19", "version": 1, "channel_order": "BGR", "mean": [1.0, 2.0, 3.0],
        "std": [1.0, 1.0, 1.0], "size": 224}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def png_bomb(path: Path, width: int = 60000, height: int = 60000) -> Path:
    """A 1 KB PNG whose header says ``width x height`` RGB pixels (10.8 GB decoded at 60000x60000)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    return path


def npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    """An .npy member whose header claims ``shape`` float32, followed by 64 bytes of data."""
    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 64


def npz(path: Path, meta: object, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", npy(np.array(json.dumps(meta))))
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)
    return path


# --- images ------------------------------------------------------------------------------------------

def test_main_job_refuses_a_decompression_bomb(tmp_path: Path):
    bomb = png_bomb(tmp_path / "bomb.png")
    line = one_error_line(run("tfbench.vgg_graph", "--image", str(bomb), "--no-bench", "--no-xla",
                              "--logdir", str(tmp_path / "logs"), cwd=tmp_path))
    assert line == (f"error: {bomb}: 60000x60000 pixels (3,600,000,000), more than the limit of "
                    f"{images.MAX_IMAGE_PIXELS:,} (tfbench.data.images.MAX_IMAGE_PIXELS): refused before decoding")
    assert not (tmp_path / "logs").exists()


def test_images_command_refuses_a_decompression_bomb(tmp_path: Path):
    bomb = png_bomb(tmp_path / "bomb.png")
    line = one_error_line(run("tfbench.images", str(bomb), cwd=tmp_path))
    assert f"{bomb}: 60000x60000 pixels" in line and "refused before decoding" in line


@pytest.mark.parametrize("library", images.LIBRARIES)
def test_every_loader_and_the_converter_use_one_limit(tmp_path: Path, library: str, monkeypatch):
    side = 100
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", side * side - 1)  # one pixel less than the image
    photo = images.save_jpeg(np.zeros((side, side, 3), np.uint8), tmp_path / "photo.jpg")
    with pytest.raises(UserError, match=r"100x100 pixels \(10,000\), more than the limit of 9,999"):
        images.load_image(photo, library)
    with pytest.raises(example.SkipImage, match=r"^too large: 100x100 pixels"):
        example.clean_jpeg(str(photo))
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", side * side)  # exactly at the limit: loaded
    assert images.load_image(photo, library).pixels.shape == (side, side, 3)


# --- weight files -----------------------------------------------------------------------------------

def test_weight_array_header_checked_before_reading(tmp_path: Path):
    bomb = npz(tmp_path / "bomb.npz", META, {"conv1_1/kernel": npy_header_only((10 ** 11,)),
                                             "conv1_1/bias": npy(np.zeros(64, np.float32))})
    line = one_error_line(run("tfbench.vgg_graph", "--weights", str(bomb), "--no-bench", "--no-xla",
                              "--logdir", str(tmp_path / "logs"), cwd=tmp_path))
    assert line == (f"error: {bomb}: layer conv1_1 kernel has shape (100000000000,), expected (3, 3, 3, 64) "
                    "(from the array's header: not read)")


@pytest.mark.parametrize(("meta", "message"), [
    ([1, 2, 3], "__meta__ must be a JSON object with keys channel_order, mean, std, size, found a JSON list"),
    ({**META, "mean": "103"}, "__meta__ 'mean' must be a list of 3 numbers, found '103'"),
    ({k: v for k, v in META.items() if k != "std"}, "__meta__ has no 'std'"),
    ({**META, "channel_order": "GBR"}, "__meta__: channel_order must be 'RGB' or 'BGR', got 'GBR'"),
])
def test_weight_metadata_of_the_wrong_shape(tmp_path: Path, meta: object, message: str):
    path = npz(tmp_path / "meta.npz", meta, {"conv1_1/kernel": npy(np.zeros((3, 3, 3, 64), np.float32))})
    with pytest.raises(UserError) as refused:
        weights.load(path)
    assert str(refused.value).startswith(f"{path}: {message}")


def test_h5_dataset_size_checked_before_reading(tmp_path: Path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "bomb.h5"
    with h5py.File(path, "w") as f:  # chunked and never written: the file stays small
        f.attrs["layer_names"] = [b"block1_conv1"]
        group = f.create_group("block1_conv1")
        group.attrs["weight_names"] = [b"kernel", b"bias"]
        group.create_dataset("kernel", shape=(10 ** 11,), dtype="f4", chunks=(1024,))
        group.create_dataset("bias", data=np.zeros(64, np.float32))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(UserError, match=r"block1_conv1/kernel: the file says shape \(100000000000,\), more "
                                        r"elements than any VGG19 array .*; not read"):
        weights.load(path)


# --- batch sizes ------------------------------------------------------------------------------------

def test_batch_that_cannot_fit_is_refused_before_any_work(tmp_path: Path):
    line = one_error_line(run("tfbench.vgg_graph", "--batch-size", "100000000", "--logdir", str(tmp_path / "logs"),
                              cwd=tmp_path))
    assert line.startswith("error: --batch-size 100000000: the batch of 224x224x3 float32 images and VGG19's "
                           "weights and activations need about ")
    most = int(line.rsplit("use --batch-size ", 1)[1].split()[0])
    assert 1 <= most < 100000000 and line.endswith(f"use --batch-size {most} or less")


# --- label files ------------------------------------------------------------------------------------

def test_binary_labels_file_named(tmp_path: Path):
    sample = imagenet_val.embedded_sample(tmp_path / "sample")
    binary = tmp_path / "labels.txt"
    binary.write_bytes(b"n01440764\n\xe5\x8f\x00\x01")
    line = one_error_line(run("tfbench.imagenet", "convert", "--src", str(sample), "--out", str(tmp_path / "out"),
                              "--labels", str(binary), "--no-progress", cwd=tmp_path))
    assert line == f"error: --labels {binary}: not a text file (byte 0xe5 at offset 10 is not UTF-8)"


# --- TFRecord schema ----------------------------------------------------------------------------------

def rewrite_first_shard(src: Path, dst: Path, change) -> Path:
    """A copy of the shards in ``src`` whose first shard has every example changed by ``change(feature map)``."""
    import shutil

    import tensorflow as tf

    from tfbench.data.manifest import sha256_file

    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    shard = dst / manifest["shards"][0]["name"]
    records = list(tf.data.TFRecordDataset(str(shard)).as_numpy_iterator())
    with tf.io.TFRecordWriter(str(shard)) as out:
        for record in records:
            parsed = tf.train.Example.FromString(record)
            change(parsed.features.feature)
            out.write(parsed.SerializeToString())
    manifest["shards"][0].update(bytes=shard.stat().st_size, sha256=sha256_file(shard))
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return shard


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    from tfbench.data import writer

    base = tmp_path_factory.mktemp("shards")
    sources, _ = imagenet_val.find_sources(imagenet_val.embedded_sample(base / "sample"))
    writer.write_shards(sources, base / "ok", num_shards=2, workers=1, progress=False)
    return base / "ok"


def test_schema_error_names_shard_key_and_type(shards: Path, tmp_path: Path):
    def label_as_text(feature):
        feature["image/class/label"].Clear()
        feature["image/class/label"].bytes_list.value.append(b"tabby")

    shard = rewrite_first_shard(shards, tmp_path / "bad", label_as_text)
    line = one_error_line(run("tfbench.imagenet", "inspect", str(tmp_path / "bad"), "--logdir", str(tmp_path / "logs"),
                              cwd=tmp_path))
    assert line == (f"error: {shard}: record 0: key 'image/class/label' holds 1 bytes value, expected one int64 "
                    "value (tensorflow/models' ImageNet schema)")
    assert "function_node" not in line


def test_schema_error_for_a_missing_key(shards: Path, tmp_path: Path):
    from tfbench.data import reader

    shard = rewrite_first_shard(shards, tmp_path / "bad", lambda feature: feature.pop("image/encoded"))
    ds = reader.make_dataset(tmp_path / "bad", batch_size=2)
    with pytest.raises(UserError) as refused:
        list(reader.iterate(ds, tmp_path / "bad"))
    assert str(refused.value) == (f"{shard}: record 0 has no key 'image/encoded' (expected one bytes value) "
                                  "(tensorflow/models' ImageNet schema)")
