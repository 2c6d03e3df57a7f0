"""Per-layer counts against hand arithmetic, published totals and TensorFlow's own profiler."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tfbench import complexity, models
from tfbench.inspection import complexity as complexity_lib
from tfbench.models import counting, zoo
from tfbench.plumbing.errors import UserError


def by_name(result):
    return {layer.name: layer for layer in result.layers}


def test_lenet5_counts_by_hand():
    result = counting.count_model(models.get("lenet5"), "lenet5")
    layers = by_name(result)
    # C1: 28x28x6 outputs, each 5*5*1 products, 24 additions + 1 bias
    assert layers["c1"].neurons == 28 * 28 * 6
    assert layers["c1"].mults == 28 * 28 * 6 * 25 and layers["c1"].adds == 28 * 28 * 6 * 25
    assert layers["c3"].mults == 10 * 10 * 16 * 5 * 5 * 6
    assert layers["f5"].mults == 400 * 120 and layers["f5"].params == 400 * 120 + 120
    # S2: average of 4 inputs = 3 additions and 1 multiplication by 1/4 per output
    assert layers["s2"].pool_neurons == 14 * 14 * 6 and layers["s2"].neurons == 0
    assert layers["s2"].adds == 14 * 14 * 6 * 3 and layers["s2"].mults == 14 * 14 * 6
    totals = result.totals()
    assert totals["params"] == 61_706
    assert totals["neurons"] == 4704 + 1600 + 120 + 84 + 10
    assert totals["macs"] == 117_600 + 240_000 + 48_000 + 10_080 + 840


def test_additions_without_bias_are_one_fewer_per_output():
    layers = by_name(counting.count_model(models.get("resnet18", input_size=64), "resnet18"))
    conv = layers["conv1_conv"]
    assert conv.output_shape == (32, 32, 64)
    assert conv.mults == 32 * 32 * 64 * 7 * 7 * 3
    assert conv.adds == conv.mults - conv.neurons  # no bias: K-1 additions per output
    bn = layers["conv1_bn"]
    assert bn.params == 2 * 64 and bn.mults == bn.adds == 32 * 32 * 64
    add = layers["conv2_block1_add"]
    assert add.adds == 16 * 16 * 64 and add.mults == 0


@pytest.mark.parametrize("name, size", [("lenet5", None), ("mlp", None), ("resnet18", 64),
                                        ("alexnet_grouped", 99), ("inception_v1", 64)])
def test_profiler_counts_two_flops_per_mac(name, size):
    """TF's profiler of the frozen graph agrees with our conv+fc count exactly."""
    result = complexity_lib.analyse(name, size)
    assert result.profiler["conv_matmul_flops"] == 2 * result.total("macs")
    assert result.profiler["total_flops"] >= result.profiler["conv_matmul_flops"]


def test_profiler_bias_adds_and_pooling_match_our_conventions():
    result = complexity_lib.analyse("lenet5")
    by_op = result.profiler["by_op"]
    assert by_op["BiasAdd"] == result.total("neurons")  # one bias addition per neuron
    pools = [layer for layer in result.layers if layer.kind == "AveragePooling2D"]
    assert by_op["AvgPool"] == sum(p.adds + p.mults for p in pools)  # window flops per output


@pytest.mark.parametrize("name, macs", [("vgg19", 19.6e9), ("resnet152", 11.5e9)])
def test_published_totals(name, macs):
    result = complexity_lib.analyse(name, profile=False)
    assert result.total("params") == zoo.MODELS[name].params
    assert abs(result.total("macs") - macs) / macs < 0.005


def test_input_size_changes_counts():
    small = complexity_lib.analyse("vgg19", 64, profile=False)
    assert small.published_params is None  # published numbers are for 224 only
    assert by_name(small)["block1_conv1"].mults == 64 * 64 * 64 * 27


def test_cli_json(capsys):
    assert complexity.main(["mlp", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == 535_818
    assert data["profiler"]["conv_matmul_flops"] == 2 * data["totals"]["macs"]
    assert [layer["name"] for layer in data["layers"]] == ["flatten", "fc1", "fc2", "output"]


def test_cli_table(capsys):
    complexity.main(["lenet5", "--no-profile"])
    out = capsys.readouterr().out
    assert "61,706" in out and "total" in out and "TF profiler" not in out


def test_bad_model_is_a_user_error():
    with pytest.raises(UserError, match="googlenet: no such file"):  # neither a registry name nor a file
        complexity.main(["googlenet"])
    proc = subprocess.run([sys.executable, "-m", "tfbench.complexity", "lenet5", "--image-size", "64"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: lenet5 only takes 32x32")
    assert "Traceback" not in proc.stderr


def test_logdir_writes_the_table_as_a_text_card(tmp_path, capsys):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert complexity.main(["lenet5", "--no-profile", "--logdir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    (run,) = (tmp_path / "complexity").iterdir()
    acc = EventAccumulator(str(run / "lenet5"))
    acc.Reload()
    card = tf.make_ndarray(acc.Tensors("complexity/lenet5")[0].tensor_proto).item().decode()
    first_line = printed.strip().splitlines()[0]
    assert first_line in card and ("61,706" in card or "61706" in card)
