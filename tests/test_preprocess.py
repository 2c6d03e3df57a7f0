"""Normalisation vs Keras' preprocess_input (bit for bit), channel-order safety, recipes NumPy vs tf.image."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from keras.applications import imagenet_utils

from tfbench.data import images
from tfbench.data import preprocess as pp
from tfbench.plumbing.errors import UserError


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).integers(0, 256, (2, 7, 9, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """chelsea (300x451) as a JPEG: path, bytes, PIL-decoded RGB pixels."""
    path = images.save_jpeg(images.skimage_photo("chelsea"), tmp_path_factory.mktemp("pp") / "chelsea.jpg")
    return path, path.read_bytes(), images.load_image(path, "pil").pixels


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_numpy_normalise_equals_keras_exactly(batch, mode):
    expected = imagenet_utils.preprocess_input(batch.astype(np.float32), mode=mode)
    got = pp.normalise_array(batch, "RGB", pp.MODES[mode])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    # The same pixels handed over in BGR order, through an Image, give the same result.
    from_bgr = np.stack([pp.normalise(images.from_array(im[..., ::-1], "BGR"), pp.MODES[mode]) for im in batch])
    np.testing.assert_array_equal(from_bgr, expected)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_in_graph_normalise_equals_keras(batch, mode):
    expected = imagenet_utils.preprocess_input(tf.constant(batch, tf.float32), mode=mode).numpy()
    eager = pp.tf_normalise(tf.constant(batch), pp.MODES[mode], channel_order="RGB").numpy()
    np.testing.assert_array_equal(eager, expected)  # eagerly: bit for bit
    bgr = pp.tf_normalise(tf.constant(batch[..., ::-1]), pp.MODES[mode], channel_order="BGR").numpy()
    np.testing.assert_array_equal(bgr, expected)
    graph = tf.function(lambda x: pp.tf_normalise(x, pp.MODES[mode], channel_order="RGB"))(tf.constant(batch))
    # In a graph, grappler's constant folding rewrites x / 127.5 as x * (1 / 127.5): last-bit changes
    # (torch mode then subtracts the mean, so the absolute error is that of x / 255, < 1e-4 grey levels).
    np.testing.assert_allclose(graph.numpy(), expected, rtol=2.4e-7, atol=1e-6)
    previous = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"constant_folding": False})
    try:
        unfolded = tf.function(lambda x: pp.tf_normalise(x, pp.MODES[mode], channel_order="RGB"))(tf.constant(batch))
    finally:
        tf.config.optimizer.set_experimental_options({"constant_folding": previous.get("constant_folding", True)})
    np.testing.assert_array_equal(unfolded.numpy(), expected)  # without that rewrite: bit for bit again
    # XLA-compiled (the TFRecord pipeline's normaliser): caffe bit for bit, the divisions to the last bit.
    xla = pp.tf_normaliser(pp.MODES[mode], channel_order="RGB", xla=True)(tf.constant(batch)).numpy()
    if mode == "caffe":
        np.testing.assert_array_equal(xla, expected)
    else:
        np.testing.assert_allclose(xla, expected, rtol=2.4e-7, atol=1e-6)


def test_generic_spec_and_denormalise_round_trip(batch):
    spec = pp.InputSpec("BGR", (100.0, 110.0, 120.0), (50.0, 60.0, 70.0))
    x = pp.normalise_array(batch, "RGB", spec)
    expected = (batch[..., ::-1].astype(np.float32) - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    np.testing.assert_array_equal(pp.denormalise(x, spec, "RGB"), batch)
    assert pp.InputSpec("BGR", (103.939, 116.779, 123.68)) == pp.CAFFE  # keras_mode is not part of equality


def test_bgr_cannot_be_fed_silently(photo):
    path, _, _ = photo
    pil = images.load_image(path, "pil")
    cv = images.load_image(path, "cv2")
    with pytest.raises(UserError, match="from_array"):
        pp.normalise(cv.pixels, pp.CAFFE)  # a bare array has no order: refused
    with pytest.raises(TypeError):
        pp.tf_normalise(cv.pixels, pp.CAFFE)  # in-graph: the order is a required keyword
    for spec in pp.MODES.values():
        a, b = pp.prepare(pil, spec), pp.prepare(cv, spec)
        assert a.shape == (224, 224, 3)
        # Only the JPEG decoders can differ (identical libjpeg-turbo here); allow 2 levels on 0..255.
        assert np.abs(a - b).max() <= 2 / min(spec.std) + 1e-5
    wrong = pp.normalise_array(cv.pixels, "RGB", pp.CAFFE)  # lying about the order does change the input
    assert np.abs(wrong - pp.normalise(pil, pp.CAFFE)).mean() > 10


@pytest.mark.parametrize("recipe", list(pp.RECIPES))
def test_recipes_numpy_vs_tf_image(photo, recipe):
    _, _, pixels = photo
    cv = pp.recipe_pixels(pixels, recipe, backend="cv2").astype(np.float32)
    pil = pp.recipe_pixels(pixels, recipe, backend="pil").astype(np.float32)
    tf_plain = pp.tf_recipe(pixels, recipe, antialias=False).numpy()
    tf_aa = pp.tf_recipe(pixels, recipe, antialias=True).numpy()
    for out in (cv, pil, tf_plain, tf_aa):
        assert out.shape == (224, 224, 3)
    # Same sampling points: OpenCV (fixed-point, rounded to uint8) vs tf.image (float) within one level.
    assert np.abs(cv - tf_plain).max() <= 1.0
    # PIL antialiases when shrinking, like tf.image with antialias=True.
    assert np.abs(pil - tf_aa).max() <= 1.5
    # ... and that makes a real difference against the plain resizers on the cat's fur.
    assert np.abs(pil - cv).max() > 8


def test_recipe_keeps_the_channel_order(photo):
    path, _, _ = photo
    cv = pp.apply_recipe(images.load_image(path, "cv2"), "B")
    assert cv.channel_order == "BGR" and cv.pixels.shape == (224, 224, 3)
    assert "recipe B (cv2)" in cv.notes


def test_a_and_b_keep_the_same_central_region():
    # A smooth ramp: resampling differences are tiny, so A vs B isolates the geometry.
    y, x = np.mgrid[0:300, 0:400]
    ramp = np.stack([y * 255 // 299, x * 255 // 399, (x + y) * 255 // 698], axis=-1).astype(np.uint8)
    a = pp.recipe_pixels(ramp, "A").astype(int)
    b = pp.recipe_pixels(ramp, "B").astype(int)
    assert np.abs(a - b).max() <= 2
    aspect = pp.recipe_pixels(ramp, "A-aspect").astype(int)
    assert np.abs(a - aspect).max() > 20  # the aspect-preserving crop sees a different region
    window = pp.recipe_pixels(ramp, "A-window").astype(int)
    assert np.abs(window - aspect).max() <= 2  # A-window: A-aspect's region, cropped before resizing


@pytest.mark.parametrize("recipe", ["B", "A-window", "A-aspect"])
def test_decode_and_crop_fast_path_equals_the_slow_path(photo, recipe):
    path, data, pixels = photo
    fast = pp.tf_decode_recipe(tf.constant(data), recipe, fast=True).numpy()
    slow = pp.tf_decode_recipe(tf.constant(data), recipe, fast=False).numpy()
    if recipe in pp.CROP_FIRST:  # the window plus a JPEG_MARGIN for chroma upsampling: the same pixels
        np.testing.assert_array_equal(fast, slow)
    else:
        np.testing.assert_allclose(fast, slow, atol=0.02)  # float32 box coordinates: < 0.02 grey levels
    # TensorFlow's decoder with INTEGER_ACCURATE gives PIL's pixels; the default INTEGER_FAST does not.
    np.testing.assert_array_equal(tf.io.decode_jpeg(data, dct_method="INTEGER_ACCURATE").numpy(), pixels)
    assert np.abs(tf.io.decode_jpeg(data).numpy().astype(int) - pixels).max() >= 1
    h, w = pixels.shape[:2]
    np.testing.assert_array_equal(pp.tf_crop_window(h, w, "B").numpy(), pp.central_fraction_window(h, w))


def test_bad_recipe_names_are_user_errors():
    with pytest.raises(UserError, match="recipe"):
        pp.recipe_pixels(np.zeros((300, 300, 3), np.uint8), "C")
    with pytest.raises(UserError, match="backend"):
        pp.recipe_pixels(np.zeros((300, 300, 3), np.uint8), "A", backend="skimage")


def test_the_decode_margin_is_what_makes_the_window_decode_exact(tmp_path, monkeypatch):
    # rocket (427x640): B's window starts at an odd column, where a cropped decode upsamples the
    # chroma at the edge on its own; decoding JPEG_MARGIN more pixels around it removes the difference.
    data = images.save_jpeg(images.skimage_photo("rocket"), tmp_path / "rocket.jpg").read_bytes()
    slow = pp.tf_decode_recipe(tf.constant(data), "B", fast=False).numpy()
    np.testing.assert_array_equal(pp.tf_decode_recipe(tf.constant(data), "B", fast=True).numpy(), slow)
    monkeypatch.setattr(pp, "JPEG_MARGIN", 0)
    assert np.abs(pp.tf_decode_recipe(tf.constant(data), "B", fast=True).numpy() - slow).max() > 1
