"""VGG19 built two ways agrees with keras.applications.VGG19, eagerly, as a graph and with XLA."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from keras.applications import vgg19 as keras_vgg19

from tfbench.data import images, preprocess
from tfbench.models import vgg19


@pytest.fixture(scope="module")
def weights() -> vgg19.WeightDict:
    return vgg19.random_weights(seed=1)


@pytest.fixture(scope="module")
def photo_batch() -> np.ndarray:
    """Three real photos from scikit-image, cropped to 224 and preprocessed the Keras (caffe) way."""
    crops = [preprocess.apply_recipe(images.from_array(images.skimage_photo(name), "RGB"), "A-aspect").rgb()
             for name in ("chelsea", "coffee", "astronaut")]
    return keras_vgg19.preprocess_input(np.stack(crops).astype(np.float32))


@pytest.fixture(scope="module")
def module(weights) -> vgg19.VGG19Module:
    return vgg19.VGG19Module(weights)


@pytest.fixture(scope="module")
def reference_logits(weights, photo_batch) -> np.ndarray:
    reference = keras_vgg19.VGG19(weights=None, classifier_activation=None)
    vgg19.set_keras_weights(reference, weights)
    assert reference.count_params() == vgg19.TRAINABLE_PARAMS
    return reference(photo_batch).numpy()


def test_parameter_count_is_143_667_240(module):
    assert module.count_params() == 143_667_240
    assert sum(s.params for s in vgg19.layer_specs()) == 143_667_240


def test_module_matches_keras_applications(module, photo_batch, reference_logits):
    logits = module(photo_batch).numpy()
    assert np.abs(reference_logits).max() > 1e-3, "logits too small to compare meaningfully"
    assert np.abs(logits - reference_logits).max() < 1e-4


def test_keras_twin_matches_keras_applications(weights, photo_batch, reference_logits):
    ours = vgg19.build_keras_vgg19(weights)
    assert [layer.name for layer in ours.layers if layer.weights] == [s.keras_name for s in vgg19.layer_specs()]
    assert np.abs(ours(photo_batch).numpy() - reference_logits).max() < 1e-4
    round_trip = vgg19.keras_weights(ours)
    np.testing.assert_array_equal(round_trip["fc6"][0], weights["fc6"][0])


def test_tf_function_takes_any_batch_and_matches_eager(module, photo_batch, reference_logits):
    fn = module.as_function()
    np.testing.assert_allclose(fn(photo_batch[:1]).numpy(), reference_logits[:1], atol=1e-4)
    np.testing.assert_allclose(fn(photo_batch).numpy(), reference_logits, atol=1e-4)
    assert fn.experimental_get_tracing_count() == 1, "batch dimension None: one trace serves every batch size"


def test_xla_matches_eager(module, photo_batch, reference_logits):
    xla = module.as_function(jit_compile=True)
    np.testing.assert_allclose(xla(photo_batch).numpy(), reference_logits, atol=1e-4)


def test_pool_shapes(module):
    shapes = {name: tuple(x.shape) for name, x in module.layers(tf.zeros([1, 224, 224, 3]))}
    assert [shapes[f"pool{i}"] for i in range(1, 6)] == [
        (1, 112, 112, 64), (1, 56, 56, 128), (1, 28, 28, 256), (1, 14, 14, 512), (1, 7, 7, 512)]
    assert shapes["fc8"] == (1, 1000)


def test_variables_are_named_like_the_original(module):
    names = {v.name for v in module.trainable_variables}
    assert "vgg19/block1/conv1_1/weights:0" in names and "vgg19/classifier/fc8/biases:0" in names
    assert len(names) == 38


def test_seeded_initialisation_is_reproducible():
    a = vgg19.random_weights(seed=5, num_classes=10, input_size=32)
    b = vgg19.random_weights(seed=5, num_classes=10, input_size=32)
    c = vgg19.random_weights(seed=6, num_classes=10, input_size=32)
    np.testing.assert_array_equal(a["conv3_1"][0], b["conv3_1"][0])
    assert not np.array_equal(a["conv3_1"][0], c["conv3_1"][0])


def test_wrong_weight_shape_is_named():
    w = vgg19.random_weights(seed=0, num_classes=10, input_size=32)
    w["conv2_1"] = (np.zeros((3, 3, 64, 64), np.float32), w["conv2_1"][1])
    with pytest.raises(ValueError, match=r"conv2_1 kernel has shape \(3, 3, 64, 64\), expected \(3, 3, 64, 128\)"):
        vgg19.VGG19Module(w, num_classes=10, input_size=32)


def test_input_size_must_be_a_multiple_of_32():
    with pytest.raises(ValueError, match="divisible by 32"):
        vgg19.layer_specs(input_size=100)
