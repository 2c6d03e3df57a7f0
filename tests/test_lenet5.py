"""tfbench.models.lenet5: 61,706 parameters, and the tf.Module and the Keras model compute the same function."""

from __future__ import annotations

import numpy as np
import pytest

from tfbench.models import lenet5


def test_parameter_count_matches_paper_and_keras():
    by_spec = sum(int(np.prod(s.kernel_shape)) + int(np.prod(s.bias_shape)) for s in lenet5.LAYERS)
    assert by_spec == lenet5.TRAINABLE_PARAMS == 61_706
    model = lenet5.build_keras_lenet5(seed=0)
    assert model.count_params() == 61_706
    module = lenet5.LeNet5Module(seed=0)
    assert sum(int(np.prod(v.shape)) for v in module.trainable_variables) == 61_706


@pytest.mark.parametrize("activation", lenet5.ACTIVATIONS)
def test_module_and_keras_agree(activation):
    x = np.random.default_rng(1).random((4, 32, 32, 1)).astype(np.float32)
    weights = lenet5.random_weights(seed=3)
    module = lenet5.LeNet5Module(weights, activation=activation)
    model = lenet5.build_keras_lenet5(weights, activation=activation)
    np.testing.assert_allclose(module(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
    # and layer by layer, against the Keras layer outputs of the same name
    names = [name for name, _ in module.layers(x)]
    import keras

    multi = keras.Model(model.input, [model.get_layer(n).output for n in names])
    for (name, mine), theirs in zip(module.layers(x), multi(x)):
        np.testing.assert_allclose(mine.numpy(), np.asarray(theirs), rtol=1e-5, atol=1e-5, err_msg=name)


def test_layer_shapes_follow_the_paper():
    module = lenet5.LeNet5Module(seed=0)
    shapes = {name: tuple(out.shape) for name, out in module.layers(np.zeros((2, 32, 32, 1), np.float32))}
    assert shapes == {"c1": (2, 28, 28, 6), "s2": (2, 14, 14, 6), "c3": (2, 10, 10, 16), "s4": (2, 5, 5, 16),
                      "f5": (2, 120), "f6": (2, 84), "output": (2, 10)}


def test_pooling_choice_follows_activation():
    import keras

    assert isinstance(lenet5.build_keras_lenet5(activation="tanh").get_layer("s2"), keras.layers.AveragePooling2D)
    assert isinstance(lenet5.build_keras_lenet5(activation="relu").get_layer("s2"), keras.layers.MaxPooling2D)
    with pytest.raises(ValueError, match="activation must be one of"):
        lenet5.LeNet5Module(activation="gelu")


def test_weights_roundtrip_and_seed():
    model = lenet5.build_keras_lenet5(seed=5)
    got = lenet5.keras_weights(model)
    for name, (k, b) in lenet5.random_weights(5).items():
        np.testing.assert_array_equal(got[name][0], k)
        np.testing.assert_array_equal(got[name][1], b)
    module_w = lenet5.LeNet5Module(seed=5).get_weights()
    np.testing.assert_array_equal(module_w["c3"][0], got["c3"][0])
    assert not np.array_equal(lenet5.random_weights(6)["c1"][0], got["c1"][0])
    with pytest.raises(ValueError, match="layer c1"):
        bad = dict(lenet5.random_weights(0))
        bad["c1"] = (np.zeros((3, 3, 1, 6), np.float32), np.zeros(6, np.float32))
        lenet5.LeNet5Module(bad)
