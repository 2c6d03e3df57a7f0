"""Normalisation folded into the first convolution equals normalise-then-convolve (within float tolerance)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfbench.data import fold_normalise
from tfbench.data import preprocess as pp
from tfbench.plumbing.errors import UserError


def _pixels(shape=(2, 17, 23, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _reference(pixels, kernel, bias, spec, padding):
    """Keras' own preprocess_input, then the convolution as it is."""
    from keras.applications import imagenet_utils

    rgb = pixels[..., ::-1] if spec.channel_order == "BGR" else pixels  # preprocess_input takes RGB
    x = imagenet_utils.preprocess_input(rgb.astype(np.float32), mode=spec.keras_mode)
    return tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=1, padding=padding.upper()), bias).numpy()


@pytest.mark.parametrize("mode", sorted(pp.MODES))
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_folded_conv_equals_normalise_then_convolve(mode, padding):
    spec = pp.MODES[mode]
    rng = np.random.default_rng(1)
    kernel = rng.normal(0, 0.1, (3, 3, 3, 64)).astype(np.float32)  # VGG19's block1_conv1 shape
    bias = rng.normal(0, 0.1, 64).astype(np.float32)
    pixels = _pixels()  # in spec's channel order, as make_dataset(normalise=False) gives them
    expected = _reference(pixels, kernel, bias, spec, padding)
    for xla in (True, False):
        got = fold_normalise.folded_conv2d(kernel, bias, spec, padding=padding, xla_input=xla)(tf.constant(pixels))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_zero_padding_with_folded_weights_is_wrong_on_the_border():
    """Why folded_conv2d pads with the mean: zero padding in pixel space is not zero in normalised space."""
    spec = pp.TORCH
    rng = np.random.default_rng(2)
    kernel = rng.normal(0, 0.1, (3, 3, 3, 8)).astype(np.float32)
    bias = np.zeros(8, np.float32)
    pixels = _pixels((1, 12, 12, 3), seed=3)
    expected = _reference(pixels, kernel, bias, spec, "same")
    folded_kernel, folded_bias = fold_normalise.fold_normalisation(kernel, bias, spec)
    naive = tf.nn.bias_add(tf.nn.conv2d(pixels.astype(np.float32), folded_kernel, 1, "SAME"), folded_bias).numpy()
    np.testing.assert_allclose(naive[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], rtol=1e-4, atol=1e-3)
    assert np.abs(naive[:, 0] - expected[:, 0]).max() > 0.1


def test_fold_refuses_a_kernel_that_is_not_for_three_channels():
    with pytest.raises(UserError, match="HxWx3xCout"):
        fold_normalise.fold_normalisation(np.zeros((3, 3, 4, 8)), np.zeros(8), pp.TORCH)


@pytest.mark.parametrize("resizer", ["fused", "tf"])
@pytest.mark.parametrize("mode", ["torch", "caffe"])
def test_reader_uint8_batches_are_the_normalised_batches_pixels(tmp_path, resizer, mode):
    """make_dataset(normalise=False) gives the pixels that, normalised, are make_dataset's own batches."""
    from tfbench.benchmarks.pipeline import make_val_folder
    from tfbench.data import imagenet_val, reader, resize_normalise

    if resizer == "fused":  # the project builds its C++ ops on every machine it supports: never a skip
        assert resize_normalise.available(), "the fused ResizeNormalise op did not build"
    spec = pp.MODES[mode]
    src = make_val_folder(tmp_path / "val", 5)
    out = tmp_path / "records"
    imagenet_val.convert(src, out, num_shards=2, workers=1, progress=False)
    kwargs = dict(batch_size=3, recipe="A-window", spec=spec, resizer=resizer)
    normalised = list(reader.make_dataset(out, **kwargs))
    pixels = list(reader.make_dataset(out, normalise=False, **kwargs))
    assert len(pixels) == len(normalised) == 2
    for (x, labels), (p, pixel_labels) in zip(normalised, pixels):
        assert p.dtype == tf.uint8 and p.shape == x.shape
        np.testing.assert_array_equal(labels.numpy(), pixel_labels.numpy())
        again = pp.tf_normalise(p, spec, channel_order=spec.channel_order).numpy()
        np.testing.assert_allclose(again, x.numpy(), rtol=0, atol=1e-5)
