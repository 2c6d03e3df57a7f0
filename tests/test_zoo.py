"""The zoo's architectures against published parameter counts, keras.applications and the papers' tables."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfbench import models
from tfbench.models import zoo
from tfbench.plumbing.errors import UserError


def trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name, expected", [
    ("alexnet", 61_100_840),         # torchvision
    ("alexnet_grouped", 60_965_224),  # Caffe bvlc_alexnet
    ("resnet18", 11_689_512),
    ("resnet50", 25_557_032),
    ("resnet152", 60_192_808),
    ("lenet5", 61_706),
])
def test_published_parameter_counts(name, expected):
    assert trainable(models.get(name)) == expected


def test_alexnet_feature_shapes_match_torchvision():
    model = models.get("alexnet")
    # torchvision: features -> (256, 6, 6) at 224, conv1 -> (64, 55, 55), conv2 -> (192, 27, 27)
    assert model.get_layer("conv1").output.shape[1:] == (55, 55, 64)
    assert model.get_layer("conv2").output.shape[1:] == (27, 27, 192)
    assert model.get_layer("pool5").output.shape[1:] == (6, 6, 256)


def test_grouped_alexnet_towers_see_half_the_channels():
    model = models.get("alexnet_grouped")
    for conv, half_in in (("conv2", 48), ("conv4", 192), ("conv5", 192)):
        for gpu in (0, 1):
            kernel = model.get_layer(f"{conv}_gpu{gpu}").kernel
            assert kernel.shape[2] == half_in
    assert model.get_layer("conv3").kernel.shape == (3, 3, 256, 384)  # conv3 crosses the GPUs
    assert model.get_layer("pool5").output.shape[1:] == (6, 6, 256)


@pytest.mark.parametrize("depth, app", [(50, "ResNet50")])
def test_resnet_matches_keras_applications_up_to_conv_biases(depth, app):
    """keras.applications' ResNets are the same network with a bias on every conv."""
    ours = models.get(f"resnet{depth}")
    reference = getattr(keras.applications, app)(weights=None)
    conv_biases = sum(layer.filters for layer in ours.layers if isinstance(layer, keras.layers.Conv2D))
    assert trainable(ours) + conv_biases == trainable(reference)
    for stage, blocks in zip((2, 3, 4, 5), zoo.RESNET_CFG[depth][1]):
        name = f"conv{stage}_block{blocks}_out"
        assert ours.get_layer(name).output.shape == reference.get_layer(name).output.shape


def test_resnet18_runs_on_a_small_input():
    model = models.get("resnet18", input_size=64)
    out = model(np.random.default_rng(0).random((2, 64, 64, 3), np.float32), training=False)
    assert out.shape == (2, 1000) and np.isfinite(out.numpy()).all()


# GoogLeNet paper, Table 1: output size and the branch widths of each inception module.
PAPER_TABLE = {
    "3a": (28, 256, (64, 96, 128, 16, 32, 32)), "3b": (28, 480, (128, 128, 192, 32, 96, 64)),
    "4a": (14, 512, (192, 96, 208, 16, 48, 64)), "4b": (14, 512, (160, 112, 224, 24, 64, 64)),
    "4c": (14, 512, (128, 128, 256, 24, 64, 64)), "4d": (14, 528, (112, 144, 288, 32, 64, 64)),
    "4e": (14, 832, (256, 160, 320, 32, 128, 128)), "5a": (7, 832, (256, 160, 320, 32, 128, 128)),
    "5b": (7, 1024, (384, 192, 384, 48, 128, 128)),
}


def test_inception_v1_follows_the_paper_table():
    model = models.get("inception_v1")
    expected, channels = 7 * 7 * 3 * 64 + 64 + 64 * 64 + 64 + 9 * 64 * 192 + 192, 192
    for name, (size, out_channels, (n1, r3, n3, r5, n5, proj)) in PAPER_TABLE.items():
        assert model.get_layer(f"inception_{name}_output").output.shape[1:] == (size, size, out_channels)
        expected += (channels * n1 + n1 + channels * r3 + r3 + 9 * r3 * n3 + n3
                     + channels * r5 + r5 + 25 * r5 * n5 + n5 + channels * proj + proj)
        channels = out_channels
    expected += 1024 * 1000 + 1000
    assert trainable(model) == expected


@pytest.mark.parametrize("name, size, message", [
    ("resnet7", None, "unknown model"),
    ("lenet5", 64, "only takes 32x32"),
    ("vgg19", 100, "divisible by 32"),
    ("alexnet", 32, "at least"),
])
def test_bad_requests_are_user_errors(name, size, message):
    with pytest.raises(UserError, match=message):
        models.get(name, input_size=size)
