"""The fused ResizeNormalise C++ op against the TensorFlow ops it replaces, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfbench.data import images
from tfbench.data import preprocess as pp
from tfbench.data import resize_normalise as rn
from tfbench.operators import backend as backend_rule
from tfbench.operators import build

SIZES = [(262, 262), (373, 373), (448, 448), (300, 451), (437, 437), (224, 224), (100, 80), (1, 1), (2, 500)]


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    photo = images.skimage_photo("chelsea")  # smooth regions and sharp fur: rounding ties happen
    return noise + [photo, np.ascontiguousarray(photo[::-1, ::-1])]


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_fused_op_equals_the_tensorflow_ops_it_replaces(inputs, mode):
    spec = pp.MODES[mode]
    for pixels in inputs:  # shrinking, enlarging (100x80, 1x1), unchanged (224x224), thin (2x500)
        for order in ("RGB", "BGR"):
            x = pixels if order == "RGB" else np.ascontiguousarray(pixels[..., ::-1])
            expected = rn.composite(x, 224, spec, channel_order=order).numpy()
            got = rn.resize_normalise(x, 224, spec, channel_order=order, backend="cpp").numpy()
            assert got.shape == (224, 224, 3) and got.dtype == np.float32
            if mode == "caffe":  # resize, round, reverse, subtract: the same float operations
                np.testing.assert_array_equal(got, expected, err_msg=f"{pixels.shape} {order}")
            else:  # (x - mean) / std where Keras computes x / 127.5 - 1 or (x / 255 - mean) / std
                np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, err_msg=f"{pixels.shape} {order}")


@pytest.mark.parametrize("normalise", [True, False])
def test_fused_op_on_a_box_equals_it_on_the_sliced_pixels(inputs, normalise):
    """CropResizeNormalise reads the box in place: the same numbers as slicing first, to the last bit."""
    for pixels in inputs:
        h, w = pixels.shape[:2]
        boxes = [(0, 0, h, w), (h // 4, w // 3, max(1, h // 2), max(1, w // 2)), (h - 1, w - 1, 1, 1), (0, 1, h, w - 1)]
        for top, left, bh, bw in boxes:
            if bw < 1:
                continue
            got = rn.resize_normalise(pixels, 224, pp.TORCH, channel_order="RGB", backend="cpp", normalise=normalise,
                                      box=[top, left, bh, bw]).numpy()
            window = np.ascontiguousarray(pixels[top:top + bh, left:left + bw])
            expected = rn.resize_normalise(window, 224, pp.TORCH, channel_order="RGB", backend="cpp",
                                           normalise=normalise).numpy()
            np.testing.assert_array_equal(got, expected, err_msg=f"{pixels.shape} box {(top, left, bh, bw)}")
            fallback = rn.resize_normalise(pixels, 224, pp.TORCH, channel_order="RGB", backend="fallback",
                                           normalise=normalise, box=[top, left, bh, bw]).numpy()
            np.testing.assert_allclose(got, fallback, rtol=1e-6, atol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"box \[0, 0, 6, 5\] is not inside"):
        rn.resize_normalise(np.zeros((5, 5, 3), np.uint8), 4, pp.TORCH, channel_order="RGB", backend="cpp",
                            box=[0, 0, 6, 5])


def test_fused_op_in_a_graph_has_a_static_shape(inputs):
    fn = tf.function(lambda x: rn.resize_normalise(x, 224, pp.CAFFE, channel_order="RGB", backend="cpp"))
    graph = fn.get_concrete_function(tf.TensorSpec([None, None, 3], tf.uint8))
    assert graph.output_shapes.as_list() == [224, 224, 3]  # the shape function, before any data
    np.testing.assert_array_equal(fn(inputs[0]).numpy(),
                                  rn.composite(inputs[0], 224, pp.CAFFE, channel_order="RGB").numpy())


def test_fused_op_errors_name_the_shape():
    lib = rn.load_library()
    kwargs = dict(out_height=4, out_width=4, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[height, width, 3\].*\[5,5,4\]"):
        lib.resize_normalise(np.zeros((5, 5, 4), np.uint8), **kwargs)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"empty image.*\[0,5,3\]"):
        lib.resize_normalise(np.zeros((0, 5, 3), np.uint8), **kwargs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="3 values each"):
        lib.resize_normalise(np.zeros((5, 5, 3), np.uint8), **{**kwargs, "mean": [0.0]})
    with pytest.raises(tf.errors.InvalidArgumentError, match="std has a zero"):
        lib.resize_normalise(np.zeros((5, 5, 3), np.uint8), **{**kwargs, "std": [1.0, 0.0, 1.0]})
    with pytest.raises(ValueError, match="rank 3|must be rank"):  # the shape function, at graph construction
        tf.function(lambda x: lib.resize_normalise(x, **kwargs)).get_concrete_function(
            tf.TensorSpec([None, None], tf.uint8))


def test_auto_falls_back_to_tensorflow_ops_when_the_op_cannot_be_built(inputs, monkeypatch):
    def no_compiler(*args, **kwargs):
        raise build.BuildError("no C++ compiler found (test)")

    monkeypatch.setattr(build, "_BY_NAME", {})  # as in a fresh process
    monkeypatch.setattr(backend_rule, "fallback_reasons", {})
    monkeypatch.setattr(build, "load", no_compiler)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler found"):
        got = rn.resize_normalise(inputs[0], 224, pp.CAFFE, channel_order="RGB").numpy()
    np.testing.assert_array_equal(got, rn.composite(inputs[0], 224, pp.CAFFE, channel_order="RGB").numpy())
    with pytest.raises(build.BuildError):
        rn.resize_normalise(inputs[0], 224, pp.CAFFE, channel_order="RGB", backend="cpp")
