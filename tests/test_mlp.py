"""tfbench.models.mlp: the exercise-3.10 MLP, parameter counts, and the tf.Module vs Keras model."""

from __future__ import annotations

import numpy as np
import pytest

from tfbench.models import mlp


@pytest.mark.parametrize("hidden", [(512, 256), (100,), (32, 16, 8)])
def test_count_params_matches_keras_and_module(hidden):
    expected = 0
    dims = [784, *hidden, 10]
    for i in range(len(dims) - 1):
        expected += dims[i] * dims[i + 1] + dims[i + 1]
    assert mlp.count_params(hidden) == expected
    assert mlp.build_keras_mlp(hidden, seed=0).count_params() == expected
    assert sum(int(np.prod(v.shape)) for v in mlp.MLPModule(hidden, seed=0).trainable_variables) == expected


def test_default_topology():
    assert mlp.count_params() == 535_818


@pytest.mark.parametrize("activation", mlp.ACTIVATIONS)
def test_module_and_keras_agree(activation):
    x = np.random.default_rng(0).random((5, 28, 28, 1)).astype(np.float32)
    weights = mlp.random_weights((64, 32), seed=2)
    module = mlp.MLPModule((64, 32), weights, activation=activation)
    model = mlp.build_keras_mlp((64, 32), weights, activation=activation)
    np.testing.assert_allclose(module(x).numpy(), np.asarray(model(x)), rtol=1e-5, atol=1e-5)
    # flat (N, 784) input gives the same logits as images
    np.testing.assert_allclose(module(x.reshape(5, 784)).numpy(), module(x).numpy(), rtol=0, atol=0)


def test_bad_topologies():
    with pytest.raises(ValueError, match="hidden widths must be positive"):
        mlp.layer_shapes(())
    with pytest.raises(ValueError, match="hidden widths must be positive"):
        mlp.MLPModule((10, 0))
    with pytest.raises(ValueError, match="layer fc1"):
        mlp.MLPModule((16,), mlp.random_weights((8,)))
