"""TfbenchConv2D: every algorithm against tf.nn.conv2d, the gradients, training, the errors.

The C++ op is built from custom_ops/conv2d on first use (cached).  The reference is always
TensorFlow's own convolution (oneDNN or Eigen, whichever this machine's TensorFlow runs), and for
the gradients also ``tf.test.compute_gradient``'s finite differences.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tensorflow as tf

from tfbench.models import lenet5, vgg19
from tfbench.operators import conv2d as conv

FAST = ("tile_oc", "tile_plane", "tile_ic", "im2col", "winograd")


@pytest.fixture(scope="module", autouse=True)
def library() -> None:
    conv.load_library()  # builds (cached) once; a build failure fails these tests loudly


def _vgg19_layers() -> list[tuple[str, int, int, int]]:
    """(name, input size, in channels, out channels) of VGG19's 16 convolutions at 224x224."""
    layers, size, cin, block, index = [], vgg19.INPUT_SIZE, 3, 1, 1
    for item in vgg19.CFG:
        if item == "M":
            size, block, index = size // 2, block + 1, 1
            continue
        layers.append((f"conv{block}_{index}", size, cin, int(item)))
        cin, index = int(item), index + 1
    return layers


VGG19 = _vgg19_layers()
VGG19_SHAPES = sorted({(size, cin, cout) for _, size, cin, cout in VGG19}, reverse=True)
LENET5 = [(spec.name, spec.kernel_shape) for spec in lenet5.LAYERS if spec.kind == "conv"]


def _inputs(input_shape: tuple, filter_shape: tuple, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(input_shape, dtype=np.float32)
    w = (rng.standard_normal(filter_shape) / np.sqrt(max(1, np.prod(filter_shape[:3])))).astype(np.float32)
    return x, w


def _check(x: np.ndarray, w: np.ndarray, strides: int, padding: str, algorithm: str) -> None:
    want = tf.nn.conv2d(x, w, strides, padding).numpy()
    got = conv.conv2d(x, w, strides, padding, algorithm=algorithm, backend="cpp").numpy()
    assert got.shape == want.shape
    # float32 sums in another order: the error grows with the magnitudes summed, not with the result
    scale = np.sqrt(np.prod(w.shape[:3])) * np.abs(x).max() * np.abs(w).max()
    tolerance = (2e-5 if algorithm == "winograd" else 5e-6) * scale
    assert np.abs(got - want).max() <= tolerance, (algorithm, np.abs(got - want).max(), tolerance)


def test_vgg19_has_the_sixteen_convolutions_of_the_paper() -> None:
    assert len(VGG19) == 16 and VGG19[0] == ("conv1_1", 224, 3, 64) and VGG19[-1] == ("conv5_4", 14, 512, 512)


@pytest.mark.parametrize("size,cin,cout", VGG19_SHAPES, ids=[f"{s}x{s}x{a}-{b}" for s, a, b in VGG19_SHAPES])
def test_every_fast_algorithm_equals_tf_on_every_vgg19_layer_shape(size: int, cin: int, cout: int) -> None:
    x, w = _inputs((1, size, size, cin), (3, 3, cin, cout))
    for algorithm in FAST:
        _check(x, w, 1, "SAME", algorithm)


@pytest.mark.parametrize("size,cin,cout", VGG19_SHAPES, ids=[f"{s}x{s}x{a}-{b}" for s, a, b in VGG19_SHAPES])
def test_the_loop_nest_equals_tf_on_every_vgg19_layer(size: int, cin: int, cout: int) -> None:
    """The loop nest runs at well under 1 GFLOP/s: the whole 14x14 layers, a 10x10 corner of the larger ones
    (the same channels, filter and padding; its code has no path that depends on the image size)."""
    side = size if size <= 14 else 10
    x, w = _inputs((1, side, side, cin), (3, 3, cin, cout))
    _check(x, w, 1, "SAME", "loops")


@pytest.mark.parametrize("name,kernel", LENET5)
@pytest.mark.parametrize("algorithm", [a for a in conv.ALGORITHMS if a != "winograd"])
def test_every_algorithm_equals_tf_on_lenet5_layers(name: str, kernel: tuple, algorithm: str) -> None:
    size = 32 if name == "c1" else 14
    x, w = _inputs((1, size, size, kernel[2]), kernel)
    _check(x, w, 1, "VALID", algorithm)


ODD = [  # input shape, filter shape, stride, padding
    ((1, 9, 9, 16), (1, 1, 16, 24), 1, "SAME"),      # 1x1
    ((2, 8, 8, 3), (1, 1, 3, 5), 2, "VALID"),        # 1x1, strided
    ((1, 23, 19, 3), (7, 7, 3, 20), 2, "SAME"),      # 7x7 stride 2 (a ResNet stem, small)
    ((1, 22, 22, 5), (7, 7, 5, 8), 2, "VALID"),
    ((3, 11, 13, 7), (3, 3, 7, 33), 1, "SAME"),      # batch 3; 7 and 33 channels
    ((3, 11, 13, 7), (3, 3, 7, 33), 1, "VALID"),
    ((1, 1, 1, 19), (3, 3, 19, 17), 1, "SAME"),      # a 1x1 image under a 3x3 filter
    ((1, 1, 1, 19), (1, 1, 19, 17), 1, "VALID"),
    ((2, 6, 5, 1), (3, 3, 1, 1), 1, "SAME"),         # one channel in, one out
    ((1, 10, 10, 4), (3, 2, 4, 6), (2, 3), "SAME"),  # non-square filter and strides
    ((1, 7, 9, 64), (3, 3, 64, 48), 1, "SAME"),      # odd output sizes: Winograd's edge tiles
]


@pytest.mark.parametrize("input_shape,filter_shape,strides,padding", ODD)
def test_every_algorithm_equals_tf_on_odd_shapes(input_shape: tuple, filter_shape: tuple, strides,
                                                 padding: str) -> None:
    x, w = _inputs(input_shape, filter_shape)
    for algorithm in conv.ALGORITHMS:
        if algorithm == "winograd" and (filter_shape[:2] != (3, 3) or strides != 1):
            continue
        _check(x, w, strides, padding, algorithm)


def test_empty_batch_and_no_input_channels() -> None:
    x, w = _inputs((0, 5, 5, 3), (3, 3, 3, 4))
    for algorithm in conv.ALGORITHMS:
        assert conv.conv2d(x, w, algorithm=algorithm, backend="cpp").shape == (0, 5, 5, 4)
    x, w = _inputs((1, 5, 5, 0), (3, 3, 0, 4))
    for algorithm in conv.ALGORITHMS:
        np.testing.assert_array_equal(conv.conv2d(x, w, algorithm=algorithm, backend="cpp").numpy(),
                                      np.zeros((1, 5, 5, 4), np.float32))


def test_inside_a_tf_function_the_shape_is_known_at_tracing() -> None:
    x, w = _inputs((2, 12, 12, 8), (3, 3, 8, 16))
    f = tf.function(lambda a, b: conv.conv2d(a, b, 2, "SAME", algorithm="tile_oc", backend="cpp"))
    graph = f.get_concrete_function(tf.TensorSpec([None, 12, 12, 8]), tf.TensorSpec([3, 3, 8, 16])).graph
    assert graph.outputs[0].shape.as_list() == [None, 6, 6, 16]
    np.testing.assert_allclose(f(x, w).numpy(), tf.nn.conv2d(x, w, 2, "SAME").numpy(), atol=1e-5)


GRADIENT_CASES = [  # input shape, filter shape, stride, padding, algorithm
    ((2, 5, 6, 3), (3, 3, 3, 4), 1, "SAME", "tile_oc"),
    ((1, 7, 6, 2), (3, 3, 2, 3), 2, "SAME", "im2col"),
    ((1, 8, 7, 2), (2, 3, 2, 3), (3, 2), "VALID", "tile_ic"),
    ((2, 6, 6, 3), (3, 3, 3, 2), 1, "VALID", "winograd"),
    ((1, 6, 5, 2), (1, 1, 2, 3), 2, "SAME", "loops"),
    ((1, 9, 8, 2), (5, 5, 2, 2), 2, "SAME", "tile_plane"),
]


@pytest.mark.parametrize("input_shape,filter_shape,strides,padding,algorithm", GRADIENT_CASES)
def test_gradients_match_finite_differences_and_tensorflows_own(input_shape: tuple, filter_shape: tuple, strides,
                                                                padding: str, algorithm: str) -> None:
    x, w = _inputs(input_shape, filter_shape, seed=1)
    x64 = tf.constant(x)

    def ours(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return conv.conv2d(a, b, strides, padding, algorithm=algorithm, backend="cpp")

    theoretical, numerical = tf.test.compute_gradient(ours, [x64, tf.constant(w)], delta=1e-2)
    reference, _ = tf.test.compute_gradient(lambda a, b: tf.nn.conv2d(a, b, strides, padding), [x64, tf.constant(w)])
    for mine, finite, theirs in zip(theoretical, numerical, reference):
        np.testing.assert_allclose(mine, theirs, atol=1e-5)   # the registered gradient = TensorFlow's, exactly
        np.testing.assert_allclose(mine, finite, atol=2e-2)   # and = finite differences (float32, delta 1e-2)
    # the registered gradient runs the op itself: a TfbenchConv2D node in the backward graph
    f = tf.function(lambda a, b: tf.gradients(ours(a, b), [a, b]))
    ops = {op.type for op in f.get_concrete_function(tf.TensorSpec(input_shape), tf.TensorSpec(filter_shape)).graph
           .get_operations()}
    assert "TfbenchConv2D" in ops and "Conv2DBackpropInput" not in ops and "Conv2DBackpropFilter" not in ops


def test_unknown_spatial_sizes_fall_back_to_tensorflows_backprop_ops() -> None:
    x, w = _inputs((1, 6, 6, 2), (3, 3, 2, 3))
    f = tf.function(lambda a, b: tf.gradients(conv.conv2d(a, b, algorithm="tile_oc", backend="cpp"), [a, b]),
                    input_signature=[tf.TensorSpec([None, None, None, 2]), tf.TensorSpec([3, 3, 2, 3])])
    with tf.GradientTape() as tape:
        a, b = tf.constant(x), tf.constant(w)
        tape.watch([a, b])
        y = tf.nn.conv2d(a, b, 1, "SAME")
    want = tape.gradient(y, [a, b])
    for got, expected in zip(f(x, w), want):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)


def test_an_unknown_batch_keeps_the_ops_own_gradients() -> None:
    x, w = _inputs((3, 7, 6, 2), (3, 3, 2, 4))

    def grads(conv_fn):
        def f(a, b):
            with tf.GradientTape() as tape:
                tape.watch([a, b])
                y = tf.reduce_sum(conv_fn(a, b) ** 2)
            return tape.gradient(y, [a, b])
        return tf.function(f, input_signature=[tf.TensorSpec([None, 7, 6, 2]), tf.TensorSpec([3, 3, 2, 4])])

    ours = grads(lambda a, b: conv.conv2d(a, b, 2, "SAME", algorithm="tile_plane", backend="cpp"))
    ops = [op.type for op in ours.get_concrete_function().graph.get_operations()]
    assert ops.count("TfbenchConv2D") == 3 and "Conv2DBackpropInput" not in ops  # forward, d/dinput, d/dfilter
    for got, want in zip(ours(x, w), grads(lambda a, b: tf.nn.conv2d(a, b, 2, "SAME"))(x, w)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)


def _train_lenet5(conv_fn, steps: int = 4) -> dict[str, np.ndarray]:
    model = lenet5.LeNet5Module(seed=3, conv=conv_fn)
    rng = np.random.default_rng(7)
    images = rng.uniform(0, 1, (16, 32, 32, 1)).astype(np.float32)
    labels = rng.integers(0, 10, 16)
    optimizer = tf.keras.optimizers.SGD(0.1)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, model(images)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return {v.name: v.numpy() for v in model.trainable_variables}


@pytest.mark.parametrize("algorithm", ["loops", "tile_ic", "im2col"])
def test_lenet5_trains_with_the_op_as_with_tf_conv2d(algorithm: str) -> None:
    want = _train_lenet5(None)
    got = _train_lenet5(functools.partial(conv.conv2d, algorithm=algorithm, backend="cpp"))
    start = _train_lenet5(None, steps=0)
    assert any(np.abs(want[k] - start[k]).max() > 1e-3 for k in want)  # training moved the weights
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=2e-5, err_msg=name)


BAD = [  # kwargs, input shape, filter shape, words the message must contain
    ({"algorithm": "fft"}, (1, 5, 5, 3), (3, 3, 3, 4), ["algorithm", "fft"]),
    ({"padding": "FULL"}, (1, 5, 5, 3), (3, 3, 3, 4), ["padding", "FULL"]),
    ({"strides": [2, 1, 1, 1]}, (1, 5, 5, 3), (3, 3, 3, 4), ["strides", "[2,1,1,1]"]),
    ({"strides": 0}, (1, 5, 5, 3), (3, 3, 3, 4), ["strides", "[1,0,0,1]"]),
    ({"strides": [1, 1, 1]}, (1, 5, 5, 3), (3, 3, 3, 4), ["strides"]),
    ({"dilations": 2}, (1, 5, 5, 3), (3, 3, 3, 4), ["dilations", "[1,2,2,1]"]),
    ({}, (1, 5, 5, 3), (3, 3, 4, 4), ["3 channels", "[3,3,4,4]"]),
    ({}, (5, 5, 3), (3, 3, 3, 4), ["input must be 4-D", "[5,5,3]"]),
    ({}, (1, 5, 5, 3), (3, 3, 3), ["filter must be 4-D", "[3,3,3]"]),
    ({"padding": "VALID"}, (1, 2, 5, 3), (3, 3, 3, 4), ["VALID", "height (2)", "(3)"]),
    ({"algorithm": "winograd"}, (1, 5, 5, 3), (5, 5, 3, 4), ["winograd", "3x3", "[5,5,3,4]"]),
    ({"algorithm": "winograd", "strides": 2}, (1, 5, 5, 3), (3, 3, 3, 4), ["winograd", "strides [1,2,2,1]"]),
]


@pytest.mark.parametrize("kwargs,input_shape,filter_shape,words", BAD, ids=[" ".join(b[3]) for b in BAD])
def test_bad_attributes_and_shapes_are_invalid_argument_errors_naming_them(kwargs: dict, input_shape: tuple,
                                                                           filter_shape: tuple, words: list) -> None:
    x, w = np.ones(input_shape, np.float32), np.ones(filter_shape, np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        conv.conv2d(x, w, **{"padding": "SAME", **kwargs}, backend="cpp")
    message = err.value.message.replace(" ", "")
    for word in words:
        assert word.replace(" ", "") in message, (word, err.value.message)


@pytest.mark.parametrize("kwargs,words", [({"algorithm": "fft"}, ["algorithm", "fft"]),
                                          ({"dilations": 2}, ["dilations"]),
                                          ({"algorithm": "winograd", "strides": 2}, ["winograd", "strides"])])
def test_the_fallback_refuses_the_same_attributes(kwargs: dict, words: list) -> None:
    x, w = np.ones((1, 5, 5, 3), np.float32), np.ones((3, 3, 3, 4), np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        conv.conv2d(x, w, **kwargs, backend="fallback")
    assert all(word in err.value.message for word in words)


def test_the_fallback_is_tf_conv2d() -> None:
    x, w = _inputs((2, 9, 9, 3), (3, 3, 3, 5))
    np.testing.assert_array_equal(conv.conv2d(x, w, 2, "VALID", backend="fallback").numpy(),
                                  tf.nn.conv2d(x, w, 2, "VALID").numpy())


def test_a_bad_shape_in_a_graph_is_an_error_at_tracing() -> None:
    f = tf.function(lambda a, b: conv.conv2d(a, b, algorithm="winograd", backend="cpp"))
    with pytest.raises(ValueError, match="winograd"):
        f.get_concrete_function(tf.TensorSpec([1, 8, 8, 3]), tf.TensorSpec([5, 5, 3, 4]))


def test_the_schedule_names_the_machine_and_derives_tiles_from_its_caches() -> None:
    text = conv.schedule([1, 56, 56, 256], [3, 3, 256, 256], algorithm="tile_ic")
    machine, plan = text.splitlines()
    assert conv.vector_extension() in ("avx512", "avx2+fma", "portable") and conv.vector_extension() in machine
    assert "L1d" in machine and "L2" in machine
    l1 = int(machine.split("L1d ")[1].split()[0]) * 1024
    block = int(plan.split("CB=")[1].split()[0])
    lanes = {"avx512": 16, "avx2+fma": 8, "portable": 4}[conv.vector_extension()]
    assert 3 * 3 * block * 2 * lanes * 4 <= l1 // 2 < 3 * 3 * (block + 1) * 2 * lanes * 4  # the largest that fits
    for algorithm in conv.ALGORITHMS:
        assert algorithm.split("_")[0] in conv.schedule([1, 56, 56, 256], [3, 3, 256, 256], algorithm=algorithm)
