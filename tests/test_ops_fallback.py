"""Every custom op stands alone and falls back: the library absent (an empty op cache and no compiler),
``TFBENCH_OPS_BACKEND=fallback``, one library per op, and the reader's default path on both backends.

Also: one bad JPEG in a batch is named by its record's file name, without hashing the shards.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfbench.data import imagenet_val, manifest, reader
from tfbench.data import preprocess as pp
from tfbench.data import resize_normalise as rn
from tfbench.operators import backend as backend_rule
from tfbench.operators import build
from tfbench.operators import fused_instance_norm as fin
from tfbench.operators import power_difference as pd
from tfbench.plumbing import paths
from tfbench.plumbing.errors import UserError


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded sample (5 photos) as one TFRecord shard."""
    root = tmp_path_factory.mktemp("sample")
    src = imagenet_val.embedded_sample(root / "val")
    imagenet_val.convert(src, root / "tfrecords", num_shards=1, workers=1, progress=False)
    return root / "tfrecords"


@pytest.fixture(scope="module")
def built() -> None:
    """Every op's library, built (cached) in the normal cache: the cpp side of each comparison."""
    for name in (pd.LIBRARY, rn.LIBRARY, rn.DECODE_LIBRARY, fin.LIBRARY):
        build.load_once(name)


@pytest.fixture
def no_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """As a fresh process on a machine without a compiler: an empty op cache, CXX that does not exist."""
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    monkeypatch.setenv(paths.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.delenv(backend_rule.ENV_BACKEND, raising=False)
    monkeypatch.setattr(build, "_BY_NAME", {})
    monkeypatch.setattr(backend_rule, "fallback_reasons", {})
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def cpp_outputs(sample: Path, built: None) -> dict[str, np.ndarray]:
    """Each op's output from its C++ kernel (module-scoped: computed before a test takes the libraries away)."""
    return _every_op(sample, "cpp")


@pytest.fixture(scope="module")
def fused_batches(sample: Path, built: None) -> dict[str, np.ndarray]:
    """The reader's first batch per recipe with the batch decoder (the default where it builds)."""
    assert reader.choose_parser("auto", "A-window", antialias=False).name == "fused"
    return {recipe: _first_batch(sample, recipe) for recipe in ("A-window", "B")}


def _first_batch(sample: Path, recipe: str, **kwargs: object) -> np.ndarray:
    return next(iter(reader.make_dataset(sample, batch_size=4, recipe=recipe, spec=pp.CAFFE, **kwargs)))[0].numpy()


@functools.lru_cache(maxsize=None)
def _jpegs(sample: Path) -> list[bytes]:
    records = tf.data.TFRecordDataset(sorted(str(p) for p in sample.glob("validation-*")))
    return [tf.train.Example.FromString(r).features.feature["image/encoded"].bytes_list.value[0]
            for r in records.as_numpy_iterator()]


def _every_op(sample: Path, backend: str | None) -> dict[str, np.ndarray]:
    """One call of each op on the same inputs, through its wrapper with ``backend``."""
    return {name: tensor.numpy() for name, tensor in _every_op_tensors(sample, backend).items()}


def _every_op_tensors(sample: Path, backend: str | None) -> dict[str, tf.Tensor]:
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.5, size=(2, 6, 5, 20)).astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    pixels = rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    return {
        "power_difference": pd.power_difference(x, mean, 2.0, backend=backend),
        "resize_normalise": rn.resize_normalise(pixels, 24, pp.CAFFE, channel_order="RGB", backend=backend),
        "decode_resize_normalise": rn.decode_crop_resize_normalise(tf.constant(_jpegs(sample)[:3]), "A-window",
                                                                   pp.CAFFE, backend=backend),
        "instance_norm": fin.instance_norm(x, np.linspace(0.5, 1.5, 20, dtype=np.float32),
                                           np.linspace(-1, 1, 20, dtype=np.float32), backend=backend),
    }


def _close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_without_the_libraries_every_op_falls_back_with_one_warning_each(
        sample: Path, cpp_outputs: dict[str, np.ndarray], no_library: Path) -> None:
    reference = cpp_outputs
    with pytest.warns(RuntimeWarning) as warned:
        got = _every_op(sample, None)  # "auto": the library cannot be built here
        again = _every_op(sample, None)  # the reason is remembered: no second warning, no second try
    messages = [str(w.message) for w in warned]
    assert len(messages) == 4, messages
    for name in reference:
        assert sum(m.startswith(f"{name}: no C++ compiler found") for m in messages) == 1, (name, messages)
    assert not no_library.exists() or not any(no_library.rglob("*.so"))
    _close(got, reference)
    _close(again, reference)
    with pytest.raises(build.BuildError, match="no C\\+\\+ compiler found"):
        fin.instance_norm(np.ones((1, 2, 2, 1), np.float32), [1.0], [0.0], backend="cpp")


def test_the_environment_forces_the_fallback_with_the_libraries_present(
        sample: Path, cpp_outputs: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    reference = cpp_outputs
    monkeypatch.setenv(backend_rule.ENV_BACKEND, "fallback")
    fns = {name: tf.function(lambda name=name: _every_op_tensors(sample, None)[name]) for name in reference}
    for name, fn in fns.items():
        graph = fn.get_concrete_function().graph
        custom = {op.type for op in graph.get_operations()} & {"PowerDifference", "ResizeNormalise",
                                                                "DecodeCropResizeNormalise", "InstanceNorm"}
        assert custom == set(), (name, custom)  # no custom node: TensorFlow's ops only
        np.testing.assert_allclose(fn().numpy(), reference[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_one_library_per_op_with_its_own_needs() -> None:
    assert {"power_difference", "resize_normalise", "decode_resize_normalise", "instance_norm"} <= set(
        build.known_ops())
    for name in build.known_ops():
        plan = build.plan(name)
        assert plan.library.name == f"{name}.so" and all(s.parent.name == name for s in plan.sources)
        kernel_library = any(f.startswith("-l:libtensorflow_cc") for f in plan.flags)
        assert kernel_library == (name == "decode_resize_normalise"), name
    # the shared resize kernels: included by both resize libraries, part of both cache keys
    decode = build.plan("decode_resize_normalise")
    assert f"-I{build.source_dir('resize_normalise')}" in decode.flags


def test_an_op_whose_needs_are_missing_fails_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A TensorFlow without libtensorflow_cc loses the batch decoder only; the resize op still plans and builds."""
    monkeypatch.setattr(tf.sysconfig, "get_lib", lambda: str(tmp_path))  # a wheel without the kernel library
    with pytest.raises(build.BuildError, match="decode_resize_normalise needs TensorFlow's kernel library"):
        build.plan("decode_resize_normalise")
    assert build.plan("resize_normalise").library.name == "resize_normalise.so"


@pytest.mark.parametrize("recipe", ["A-window", "B"])
def test_the_readers_default_path_falls_back_without_the_library(
        sample: Path, fused_batches: dict[str, np.ndarray], no_library: Path, recipe: str) -> None:
    fused = fused_batches[recipe]
    with pytest.warns(RuntimeWarning, match="decode_resize_normalise: no C\\+\\+ compiler found"):
        assert reader.choose_parser("auto", recipe, antialias=False).name == "tf"
    np.testing.assert_array_equal(_first_batch(sample, recipe), fused)  # the same numbers, from TensorFlow's ops
    # an explicit fused resizer falls back too: the batch decoded image by image (no build in a map function)
    np.testing.assert_array_equal(_first_batch(sample, recipe, resizer="fused"), fused)


def test_the_readers_default_path_honours_the_environment(sample: Path, built: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend_rule.ENV_BACKEND, "fallback")
    assert reader.choose_parser("auto", "A-window", antialias=False).name == "tf"
    monkeypatch.setenv(backend_rule.ENV_BACKEND, "cpp")
    assert reader.choose_parser("auto", "A-window", antialias=False).name == "fused"


def test_the_decode_op_needs_one_name_per_image(sample: Path, built: None) -> None:
    jpegs = tf.constant(_jpegs(sample)[:2])
    with pytest.raises(tf.errors.InvalidArgumentError, match="names must be empty or hold one name per image \\(2\\)"):
        rn.decode_crop_resize_normalise(jpegs, "A-window", pp.CAFFE, names=["a.JPEG"], backend="cpp")


def _bad_copy(sample: Path, dest: Path, bad: int) -> str:
    """A copy of the sample's shard whose record ``bad`` holds a truncated JPEG, with a manifest that matches:
    an intact shard (its sha256 is right) with one bad image in it.  Returns that image's file name."""
    dest.mkdir()
    (shard,) = sorted(sample.glob("validation-*"))
    records = list(tf.data.TFRecordDataset(str(shard)).as_numpy_iterator())
    example = tf.train.Example.FromString(records[bad])
    jpeg = example.features.feature["image/encoded"].bytes_list.value[0]
    example.features.feature["image/encoded"].bytes_list.value[0] = jpeg[: len(jpeg) // 3]
    records[bad] = example.SerializeToString()
    with tf.io.TFRecordWriter(str(dest / shard.name)) as writer:
        for record in records:
            writer.write(record)
    data = json.loads((sample / manifest.MANIFEST).read_text())
    data["shards"][0].update(bytes=(dest / shard.name).stat().st_size, sha256=manifest.sha256_file(dest / shard.name))
    (dest / manifest.MANIFEST).write_text(json.dumps(data))
    return example.features.feature["image/filename"].bytes_list.value[0].decode()


def test_a_bad_jpeg_in_a_batch_is_named_by_its_file_without_hashing_the_shards(
        sample: Path, built: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _bad_copy(sample, tmp_path / "bad", bad=2)
    hashed = []
    monkeypatch.setattr(manifest, "sha256_file", lambda path: hashed.append(path) or "")
    ds = reader.make_dataset(tmp_path / "bad", batch_size=4, recipe="A-window", spec=pp.CAFFE)
    assert reader.choose_parser("auto", "A-window", antialias=False).name == "fused"
    with pytest.raises(UserError) as raised:
        list(reader.iterate(ds, tmp_path / "bad"))
    message = str(raised.value)
    assert f'image 2 of 4 "{name}"' in message and "invalid or truncated JPEG data" in message, message
    assert message.startswith(str(tmp_path / "bad")) and "\n" not in message
    assert hashed == []  # the op named the image: no shard was read again to find it


def test_a_bad_jpeg_on_tensorflows_decoder_is_named_by_its_file_too(
        sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the batch decoder (the fallback, or ``resizer="tf"``) TensorFlow's JPEG op fails without a name:
    the reader finds the record by decoding from the failed batch on, still without hashing the shards."""
    name = _bad_copy(sample, tmp_path / "bad", bad=3)
    hashed = []
    monkeypatch.setattr(manifest, "sha256_file", lambda path: hashed.append(path) or "")
    monkeypatch.setenv(backend_rule.ENV_BACKEND, "fallback")
    for resizer in ("auto", "tf"):
        ds = reader.make_dataset(tmp_path / "bad", batch_size=2, recipe="A-window", spec=pp.CAFFE, resizer=resizer)
        with pytest.raises(UserError) as raised:
            list(reader.iterate(ds, tmp_path / "bad"))
        message = str(raised.value)
        assert message.startswith(f'{tmp_path / "bad"}: record 3 "{name}": '), message
        assert "JPEG" in message and "\n" not in message, message
    assert hashed == []
    assert reader.find_bad_image(sample) is None  # the intact sample: nothing to name
