"""Mixed precision in the explicit-variable models: float32 variables, 16-bit arithmetic, float32 logits.

The reference is Keras itself: the same weights in the Keras twin built under the matching
``mixed_*`` policy.  bfloat16 keeps 8 significant bits (relative step 2**-8), float16 11
(2**-11); the tolerances below are a few steps of each, relative to the largest float32 logit.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfbench.models import lenet5, mlp, registry, vgg19
from tfbench.plumbing.errors import UserError

#: largest |16-bit logits - float32 logits| / max |float32 logits| accepted (about 4 rounding steps)
RELATIVE_TOLERANCE = {"bfloat16": 4 * 2.0**-8, "float16": 4 * 2.0**-11}


def _photos(size: int) -> np.ndarray:
    from tfbench.data import images

    batch = [tf.image.resize(images.skimage_photo(n)[..., :3].astype(np.float32), (size, size)).numpy()
             for n in ("chelsea", "coffee", "astronaut")]
    return (np.stack(batch) / 127.5 - 1.0).astype(np.float32)


def _inputs(name: str) -> np.ndarray:
    if name == "vgg19":
        return _photos(64)
    shape = (5, 32, 32, 1) if name == "lenet5" else (5, 28, 28, 1)
    return np.random.default_rng(0).random(shape).astype(np.float32)


def _module(name: str, dtype: str, weights):
    if name == "vgg19":
        return vgg19.VGG19Module(weights, input_size=64, num_classes=10, compute_dtype=dtype)
    if name == "lenet5":
        return lenet5.LeNet5Module(weights, compute_dtype=dtype)
    return mlp.MLPModule(weights=weights, compute_dtype=dtype)


def _weights(name: str):
    if name == "vgg19":
        return vgg19.random_weights(seed=1, num_classes=10, input_size=64)
    return lenet5.random_weights(1) if name == "lenet5" else mlp.random_weights(seed=1)


@pytest.fixture(autouse=True)
def global_policy_is_restored():
    yield
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["vgg19", "lenet5", "mlp"])
def test_16_bit_module_logits_close_to_float32_and_equal_to_keras_mixed_policy(name, dtype):
    weights, x = _weights(name), _inputs(name)
    reference = _module(name, "float32", weights)(x).numpy()
    module = _module(name, dtype, weights)
    logits = module(x)
    assert logits.dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in module.trainable_variables)
    scale = np.abs(reference).max()
    assert scale > 1e-4, "logits too small to compare meaningfully"
    error = np.abs(logits.numpy() - reference).max() / scale
    assert 0 < error <= RELATIVE_TOLERANCE[dtype]  # > 0: the arithmetic really was 16-bit
    keras_model = registry.get(name, weights=weights, compute_dtype=dtype,
                               **({"input_size": 64, "num_classes": 10} if name == "vgg19" else {}))
    assert keras_model.output.dtype == "float32"
    assert any(getattr(layer, "compute_dtype", None) == dtype for layer in keras_model.layers)
    np.testing.assert_allclose(logits.numpy(), keras_model(x).numpy(), rtol=0, atol=1e-3 * scale)


@pytest.mark.parametrize("name", ["lenet5", "mlp"])
def test_intermediate_outputs_are_16_bit_and_gradients_reach_float32_variables(name):
    weights, x = _weights(name), _inputs(name)
    module = _module(name, "bfloat16", weights)
    assert all(out.dtype == tf.bfloat16 for _, out in module.layers(x))
    reference = _module(name, "float32", weights)
    labels = np.arange(len(x)) % 10
    grads = {}
    for key, model in (("bf16", module), ("f32", reference)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, model(x)))
        grads[key] = tape.gradient(loss, model.trainable_variables)
    for g16, g32 in zip(grads["bf16"], grads["f32"]):
        assert g16.dtype == tf.float32
        # conv gradients sum hundreds of bfloat16 products per weight, so element-wise they can be
        # off by 10-20%; their direction (what the optimizer follows) must agree
        a, b = g16.numpy().ravel(), g32.numpy().ravel()
        cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        assert cosine >= 0.98


def test_vgg19_function_takes_float32_images_and_computes_in_bfloat16():
    module = vgg19.VGG19Module(input_size=32, num_classes=10, compute_dtype="bfloat16")
    fn = module.as_function()
    graph = fn.get_concrete_function().graph
    conv_dtypes = {op.get_attr("T") for op in graph.get_operations() if op.type == "Conv2D"}
    assert conv_dtypes == {tf.bfloat16}
    assert fn(np.zeros((2, 32, 32, 3), np.float32)).dtype == tf.float32


def test_registry_passes_compute_dtype_and_rejects_bad_ones():
    assert registry.get("lenet5", impl="module", compute_dtype="bfloat16").compute_dtype == tf.bfloat16
    assert registry.get("mlp", impl="module").compute_dtype == tf.float32
    with pytest.raises(UserError, match="compute_dtype"):
        registry.get("mlp", impl="module", compute_dtype="float64")
    with pytest.raises(ValueError, match="compute_dtype"):
        lenet5.LeNet5Module(compute_dtype="int8")
