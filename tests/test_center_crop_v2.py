"""The A-window-v2 recipe is tensorflow/models' current eval crop, bit for bit.

The reference is a copy of the lines of ``official.vision.ops.preprocess_ops.center_crop_image_v2``
(kept in the pipeline benchmark, whose tensorflow/models peer runs it) and of the eval parser's resize
(``official.vision.dataloaders.classification_input.Parser``), so the test needs no ``tf-models-official``.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfbench.benchmarks.pipeline import center_crop_image_v2
from tfbench.data import images
from tfbench.data import preprocess as pp


def models_eval_image(image_bytes, output_size=(224, 224)):
    """The eval parser's image path up to normalisation: extract the shape, crop v2, bilinear resize."""
    image_shape = tf.image.extract_jpeg_shape(image_bytes)
    image = center_crop_image_v2(image_bytes, image_shape)
    return tf.image.resize(image, output_size, method=tf.image.ResizeMethod.BILINEAR)


#: (height, width) of the test JPEGs: odd and even H - side, portrait and landscape, the ImageNet 500x375 shape
SHAPES = [(375, 500), (500, 377), (333, 500), (300, 451), (256, 256), (427, 640), (281, 283)]


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v2")
    photo = images.skimage_photo("chelsea")
    out = {}
    for h, w in SHAPES:
        pixels = tf.cast(tf.image.resize(photo, (h, w)), tf.uint8).numpy()
        out[(h, w)] = images.save_jpeg(pixels, folder / f"{h}x{w}.jpg").read_bytes()
    return out


@pytest.mark.parametrize("shape", SHAPES)
def test_a_window_v2_is_bit_identical_to_center_crop_image_v2(jpegs, shape):
    data = tf.constant(jpegs[shape])
    expected = models_eval_image(data).numpy()
    np.testing.assert_array_equal(pp.tf_decode_recipe(data, "A-window-v2").numpy(), expected)
    np.testing.assert_array_equal(tf.function(lambda b: pp.tf_decode_recipe(b, "A-window-v2"))(data).numpy(),
                                  expected)
    window = pp.tf_decode_window(data, "A-window-v2").numpy()
    np.testing.assert_array_equal(window, center_crop_image_v2(data, tf.image.extract_jpeg_shape(data)).numpy())


@pytest.mark.parametrize("shape", SHAPES + [(1, 1), (7, 9), (1000, 1333), (2048, 1537)])
def test_v2_window_numpy_equals_in_graph_and_is_at_most_one_pixel_before_a_window(shape):
    h, w = shape
    numpy_window = pp.central_square_window_v2(h, w)
    np.testing.assert_array_equal(pp.tf_crop_window(h, w, "A-window-v2").numpy(), numpy_window)
    top, left, side, _ = numpy_window
    legacy_top, legacy_left, legacy_side, _ = pp.central_square_window(h, w)
    assert side == legacy_side == int(0.875 * min(h, w))
    for offset, legacy, full in ((top, legacy_top, h), (left, legacy_left, w)):
        assert offset == int((full - 0.875 * min(h, w)) / 2)
        assert legacy - offset in (0, 1)


def test_the_recipes_differ_where_the_offsets_do(jpegs):
    # 375x500: side 328, H - side = 47 (odd): legacy top 24, v2 top 23; W - side = 172: both 86.
    assert pp.central_square_window(375, 500)[:2] == (24, 86)
    assert pp.central_square_window_v2(375, 500)[:2] == (23, 85)
    data = tf.constant(jpegs[(375, 500)])
    v2 = pp.tf_decode_recipe(data, "A-window-v2").numpy()
    legacy_same_dct = pp.tf_decode_recipe(data, "A-window", dct_method="").numpy()
    assert np.abs(v2 - legacy_same_dct).max() > 1  # one row's shift shows on the cat's fur
    assert pp.recipe_dct("A-window-v2") == "" and pp.recipe_dct("A-window") == "INTEGER_ACCURATE"
