"""TFRecord writer and reader: round trip, dirty data, crash-resume, damaged shards, the reusable decode step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image as PILImage

from tfbench.data import example, imagenet_val, images, labels, reader
from tfbench.data import preprocess as pp
from tfbench.data.example import FEATURE_KEYS
from tfbench.data.manifest import MANIFEST, sha256_file
from tfbench.plumbing.errors import UserError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The embedded sample in val layout, converted with two worker processes into 3 shards."""
    root = tmp_path_factory.mktemp("sample")
    src = imagenet_val.embedded_sample(root / "val")
    manifest = imagenet_val.convert(src, root / "tfrecords", num_shards=3, workers=2, progress=False)
    return src, root / "tfrecords", manifest


def expected_labels() -> dict[str, int]:
    """File name -> class index of the embedded sample, from the bundled val list (independently of the code)."""
    val = (REPO / "datasets/imagenet/imagenet_2012_validation_synset_labels.txt").read_text().split()
    index = {s: i for i, s in enumerate(labels.synsets())}
    return {f"ILSVRC2012_val_{val.index(s) + 1:08d}.JPEG": index[s] for s in imagenet_val.EMBEDDED_PHOTOS.values()}


def test_round_trip_of_the_embedded_sample(sample):
    src, out, manifest = sample
    assert manifest.found == manifest.written == 5 and manifest.skipped == []
    assert sorted(p.name for p in out.glob("validation-*")) == [f"validation-0000{i}-of-00003" for i in range(3)]
    assert sum(s["count"] for s in manifest.shards) == 5
    for shard in manifest.shards:
        assert sha256_file(out / shard["name"]) == shard["sha256"]
    ds = reader.make_dataset(out, batch_size=2, recipe="A-aspect", spec=pp.CAFFE, with_filenames=True)
    got = {}
    for x, y, names in ds:
        assert x.dtype == tf.float32 and x.shape[1:] == (224, 224, 3)
        for image, label, name in zip(x.numpy(), y.numpy(), names.numpy()):
            got[name.decode()] = (int(label), image)
    assert {k: v[0] for k, v in got.items()} == expected_labels()
    # The pipeline's input equals the NumPy path (PIL decode, OpenCV resize, normalise) to resizer
    # rounding: both round the resized pixels to uint8, and they differ by at most one grey level.
    for name, (_, image) in got.items():
        reference = pp.prepare(images.load_image(src / name, "pil"), pp.CAFFE, "A-aspect", backend="cv2")
        assert np.abs(image - reference).max() <= 1.0 + 1e-4, name


def test_pipeline_variants_agree(sample):
    src, out, _ = sample

    def run(**kwargs):
        ds = reader.make_dataset(out, batch_size=5, recipe="A-aspect", spec=pp.CAFFE, with_filenames=True, **kwargs)
        x, _, names = next(iter(ds))
        return x.numpy(), [n.decode() for n in names.numpy()]

    default, names = run()
    cropped, _ = run(fast=True)  # decode_and_crop_jpeg + crop_and_resize: the same sampling points
    # float32 box coordinates move values by < 0.02 grey levels, which flips the uint8 rounding of a few
    flipped = np.abs(cropped - default) > 1e-4
    assert np.abs(cropped - default).max() <= 1.0 + 1e-4 and flipped.mean() < 0.01
    with_cv2, _ = run(resizer="cv2")  # OpenCV through numpy_function: exactly the NumPy path
    reference = np.stack([pp.prepare(images.load_image(src / n, "pil"), pp.CAFFE, "A-aspect", backend="cv2")
                          for n in names])
    np.testing.assert_array_equal(with_cv2, reference)
    # XLA's fused normalisation and tf.data's autotuning change the speed, never the numbers (caffe mode)
    np.testing.assert_array_equal(run(xla_normalise=False)[0], default)
    np.testing.assert_array_equal(run(autotune=True)[0], default)


def test_the_a_window_pipeline_is_tensorflow_models_eval_crop(sample):
    src, out, _ = sample
    ds = reader.make_dataset(out, batch_size=5, recipe="A-window", spec=pp.CAFFE, with_filenames=True)
    x, _, names = next(iter(ds))
    for image, name in zip(x.numpy(), names.numpy()):
        pixels = images.load_image(src / name.decode(), "pil")
        h, w = pixels.pixels.shape[:2]
        # the window of tensorflow/models' _decode_and_center_crop, written out here independently
        side = int(224 / 256 * min(h, w))
        assert pp.central_square_window(h, w) == ((h - side + 1) // 2, (w - side + 1) // 2, side, side)
        reference = pp.prepare(pixels, pp.CAFFE, "A-window", backend="cv2")
        assert np.abs(image - reference).max() <= 1.0 + 1e-4, name  # decoded window only, same pixels


@pytest.mark.parametrize("recipe", ["A-window", "B"])
def test_the_fused_op_pipeline_equals_the_tensorflow_ops_pipeline(sample, recipe):
    _, out, _ = sample

    def first_batch(**kwargs):
        return next(iter(reader.make_dataset(out, batch_size=5, recipe=recipe, spec=pp.CAFFE, **kwargs)))[0].numpy()

    fused = first_batch()  # resizer="auto": one DecodeCropResizeNormalise per batch for the crop-first recipes
    assert reader.choose_parser("auto", recipe, antialias=False).batched
    np.testing.assert_array_equal(fused, first_batch(resizer="tf"))
    np.testing.assert_array_equal(fused, first_batch(resizer="fused-per-image"))
    np.testing.assert_array_equal(fused, first_batch(resizer="fused-one-thread"))
    np.testing.assert_array_equal(fused, first_batch(resizer="fused", fast=False))  # full decode, same window
    np.testing.assert_array_equal(fused, first_batch(resizer="fused-per-image", fast=False))
    pixels = first_batch(normalise=False)  # uint8 batches: the same pixels before the mean is subtracted
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(fused, pp.tf_normalise(pixels, pp.CAFFE, channel_order="BGR").numpy())
    with pytest.raises(UserError, match="crop-first recipe"):
        reader.make_dataset(out, batch_size=5, recipe="A-aspect", resizer="fused")


def test_the_batched_reader_keeps_every_image_label_and_name_in_file_order(sample):
    """Records are batched before they are parsed: the last, smaller batch, drop_remainder and the file order."""
    src, out, _ = sample
    expected_names = sorted(p.name for p in src.iterdir())
    for parallel_reads in (None, 2):
        ds = reader.make_dataset(out, batch_size=2, recipe="A-window", spec=pp.TORCH, with_filenames=True,
                                 parallel_reads=parallel_reads)
        batches = list(ds)
        assert [int(x.shape[0]) for x, _, _ in batches] == [2, 2, 1]
        names = [n.decode() for _, _, batch in batches for n in batch.numpy()]
        # shards are contiguous runs of the sorted files: read one after another, the records come in file order
        assert names == expected_names if parallel_reads is None else sorted(names) == expected_names
        per_image = reader.make_dataset(out, batch_size=2, recipe="A-window", spec=pp.TORCH, with_filenames=True,
                                        resizer="fused-per-image", parallel_reads=parallel_reads)
        for (x, y, n), (x2, y2, n2) in zip(batches, per_image):
            np.testing.assert_array_equal(x.numpy(), x2.numpy())
            np.testing.assert_array_equal(y.numpy(), y2.numpy())
            np.testing.assert_array_equal(n.numpy(), n2.numpy())
    dropped = reader.make_dataset(out, batch_size=2, recipe="A-window", drop_remainder=True)
    assert [int(x.shape[0]) for x, _ in dropped] == [2, 2]
    assert dropped.element_spec[0].shape.as_list() == [2, 224, 224, 3]


def test_stored_features_follow_the_tensorflow_models_schema(sample):
    src, out, _ = sample
    raw = next(iter(tf.data.TFRecordDataset(str(out / "validation-00000-of-00003"))))
    example = tf.train.Example.FromString(raw.numpy())
    assert set(example.features.feature) == set(FEATURE_KEYS)
    f = example.features.feature
    name = f["image/filename"].bytes_list.value[0].decode()
    assert f["image/encoded"].bytes_list.value[0] == (src / name).read_bytes()  # clean JPEGs are stored as is
    assert f["image/format"].bytes_list.value[0] == b"JPEG" and f["image/colorspace"].bytes_list.value[0] == b"RGB"
    label = f["image/class/label"].int64_list.value[0]
    assert labels.class_index()[label] == (f["image/class/synset"].bytes_list.value[0].decode(),
                                           f["image/class/text"].bytes_list.value[0].decode())


def test_decoded_dataset_resizes_to_grayscale_subset(sample):
    _, out, _ = sample
    keep = {281, 872}  # tabby, tripod
    pairs = list(reader.decoded_dataset(out, size=(32, 32), grayscale=True, classes=keep))
    assert sorted(int(label) for _, label in pairs) == sorted(keep)
    for image, _ in pairs:
        assert image.dtype == tf.uint8 and image.shape == (32, 32, 1)
    full = list(reader.decoded_dataset(out))
    assert len(full) == 5 and {tuple(im.shape[2:]) for im, _ in full} == {(3,)}


def _dirty_folder(folder: Path) -> dict[str, str]:
    """Six files named like val images: clean, grayscale, PNG-as-JPEG, CMYK, truncated, zero-byte."""
    folder.mkdir()
    rgb = images.skimage_photo("coffee")[::2, ::2]
    names = {kind: f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i, kind in
             enumerate(["clean", "gray", "png", "cmyk", "corrupt", "empty"])}
    images.save_jpeg(rgb, folder / names["clean"])
    images.save_jpeg(images.skimage_photo("camera")[::2, ::2], folder / names["gray"])
    PILImage.fromarray(rgb).save(folder / names["png"], format="PNG")
    PILImage.fromarray(rgb).convert("CMYK").save(folder / names["cmyk"], format="JPEG", quality=95)
    whole = (folder / names["clean"]).read_bytes()
    (folder / names["corrupt"]).write_bytes(whole[: len(whole) // 2])
    (folder / names["empty"]).write_bytes(b"")
    return names


def test_dirty_data_outcomes(tmp_path):
    names = _dirty_folder(tmp_path / "val")
    manifest = imagenet_val.convert(tmp_path / "val", tmp_path / "out", num_shards=2, workers=1, progress=False)
    assert manifest.found == 6 and manifest.written == 4
    assert manifest.written + len(manifest.skipped) == manifest.found
    skipped = {item["file"]: item["reason"] for item in manifest.skipped}
    assert set(skipped) == {names["corrupt"], names["empty"]}
    assert "zero-byte" in skipped[names["empty"]] and "corrupt" in skipped[names["corrupt"]]
    reencoded = {item["file"]: item["reason"] for item in manifest.reencoded}
    assert set(reencoded) == {names["png"], names["cmyk"]}
    assert "PNG" in reencoded[names["png"]] and "CMYK" in reencoded[names["cmyk"]]
    decoded = {}
    for serialized in reader.records(tmp_path / "out")[0]:
        f = example.parse_example(serialized)
        decoded[f["image/filename"].numpy().decode()] = reader.decode_image(f["image/encoded"]).numpy()
    assert set(decoded) == {names["clean"], names["gray"], names["png"], names["cmyk"]}
    gray = decoded[names["gray"]]
    assert gray.shape[2] == 3 and np.array_equal(gray[..., 0], gray[..., 2])  # grayscale kept, 3 channels out
    original = images.skimage_photo("coffee")[::2, ::2]
    again = tmp_path / "again.jpg"
    PILImage.fromarray(original).save(again, format="JPEG", quality=example.REENCODE_QUALITY)
    np.testing.assert_array_equal(decoded[names["png"]], images.load_image(again, "pil").pixels)  # PNG -> JPEG
    assert np.abs(decoded[names["cmyk"]] - original.astype(int)).mean() < 6  # CMYK -> RGB, two JPEG generations


def test_empty_or_wrong_source_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no ImageNet val images"):
        imagenet_val.convert(tmp_path / "empty", tmp_path / "out", progress=False)
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="holiday.jpg"):
        imagenet_val.convert(tmp_path / "wrong", tmp_path / "out", progress=False)
    with pytest.raises(UserError, match="no such folder"):
        imagenet_val.convert(tmp_path / "missing", tmp_path / "out", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    with pytest.raises(UserError, match="none of the 1 images"):
        imagenet_val.convert(tmp_path / "bad", tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2" / MANIFEST).exists()


def test_truncated_and_corrupt_shards_are_named(sample, tmp_path):
    _, out, manifest = sample
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for p in out.iterdir():
        if p.is_file():
            (damaged / p.name).write_bytes(p.read_bytes())
    victim = damaged / manifest.shards[1]["name"]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])
    with pytest.raises(UserError, match=f"{victim.name}.*truncated"):
        reader.make_dataset(damaged, batch_size=2)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # same size: only the record CRC can tell
    victim.write_bytes(bytes(flipped))
    ds = reader.make_dataset(damaged, batch_size=2)
    with pytest.raises(UserError, match=f"{victim.name}.*sha256"):
        for _ in reader.iterate(ds, damaged):
            pass
    (damaged / MANIFEST).unlink()
    with pytest.raises(UserError, match="manifest.json not found"):
        reader.make_dataset(damaged, batch_size=2)


def test_rerun_keeps_intact_shards_and_rewrites_changed_ones(sample, tmp_path):
    src, _, _ = sample
    out = tmp_path / "out"
    first = imagenet_val.convert(src, out, num_shards=2, workers=1, progress=False)
    inodes = {p.name: p.stat().st_ino for p in out.glob("validation-*")}
    again = imagenet_val.convert(src, out, num_shards=2, workers=1, progress=False)
    assert again == first and {p.name: p.stat().st_ino for p in out.glob("validation-*")} == inodes
    relabelled = imagenet_val.convert(src, out, num_shards=2, workers=1, label_offset=1, progress=False)
    assert all(out.joinpath(n).stat().st_ino != i for n, i in inodes.items())  # labels changed: rewritten
    assert [s["sha256"] for s in relabelled.shards] != [s["sha256"] for s in first.shards]
    assert sorted(imagenet_val.class_counts(out)) == sorted(expected_labels().values())
    with pytest.raises(UserError, match="another conversion"):
        imagenet_val.convert(src, out, num_shards=3, workers=1, progress=False)


def _big_val_folder(folder: Path, count: int) -> None:
    """``count`` large JPEGs (slow enough to decode that a writer can be killed between shards)."""
    folder.mkdir()
    big = np.asarray(PILImage.fromarray(images.skimage_photo("chelsea")).resize((1800, 1200)))
    for i in range(count):
        images.save_jpeg(np.roll(big, 7 * i, axis=1), folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG", quality=95)


def test_crash_resume(tmp_path):
    count = 24
    _big_val_folder(tmp_path / "val", count)
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "tfbench.imagenet", "convert", "--src", str(tmp_path / "val"), "--out", str(out),
           "--shards", str(count), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if len(list(out.glob("validation-*"))) >= 2:
                break
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)  # the writer dies between (or inside) shards
    finally:
        proc.wait()
    done = {p.name: p.stat().st_ino for p in out.glob("validation-*")}
    assert 2 <= len(done) < count, "the writer was not caught mid-way"
    assert not (out / MANIFEST).exists()  # an interrupted conversion has no manifest

    resumed = imagenet_val.convert(tmp_path / "val", out, num_shards=count, workers=1, progress=False)
    for name, inode in done.items():
        assert (out / name).stat().st_ino == inode  # complete shards were kept, not rewritten
    assert not list(out.glob(".*.partial"))
    clean = imagenet_val.convert(tmp_path / "val", tmp_path / "clean", num_shards=count, workers=2, progress=False)
    assert resumed == clean  # same counts, same checksums as a run that never crashed
    assert json.loads((out / MANIFEST).read_text()) == resumed.to_json()
