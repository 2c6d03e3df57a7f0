"""Tests for tfbench.fusion and tfbench.models.blocks: fused and unfused paths compute the same thing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfbench import fusion
from tfbench.models import blocks, lenet5
from tfbench.models.blocks import ConvShape
from tfbench.plumbing.errors import UserError
from tfbench.rewriting import fusion as fusion_lib

SHAPE = ConvShape(2, 8, 8, 16, 3)


def test_fold_batch_norm_matches_the_keras_layer():
    model = blocks.keras_conv_bn_relu(SHAPE, seed=3)
    kernel, stats = blocks.keras_bn_weights(model)
    assert not np.allclose(stats["variance"], 1.0)  # the statistics are not the identity
    folded_kernel, folded_bias = blocks.fold_batch_norm(kernel, None, **stats)
    folded = blocks.ConvBiasRelu(SHAPE, kernel=folded_kernel, bias=folded_bias)
    x = SHAPE.input(1)
    reference = model(x, training=False).numpy()
    assert np.abs(folded(x).numpy() - reference).max() <= fusion_lib.TOLERANCE
    assert np.abs(blocks.FusedBNConvRelu(kernel, stats)(x).numpy() - reference).max() <= fusion_lib.TOLERANCE


def test_fold_batch_norm_with_a_conv_bias_matches_numpy():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((1, 1, 3, 4)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    stats = blocks.bn_stats(rng, 4)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    conv = x @ kernel[0, 0] + bias  # a 1x1 conv on single pixels is a matmul
    bn = (conv - stats["mean"]) / np.sqrt(stats["variance"] + blocks.BN_EPSILON) * stats["gamma"] + stats["beta"]
    k2, b2 = blocks.fold_batch_norm(kernel, bias, **stats)
    np.testing.assert_allclose(x @ k2[0, 0] + b2, bn, atol=1e-5)


@pytest.mark.parametrize("name", ["conv", "chain", "lenet"])
def test_xla_and_default_outputs_agree(name):
    if name == "conv":
        fn, x = blocks.ConvBiasRelu(SHAPE).__call__, SHAPE.input()
    elif name == "chain":
        fn, x = blocks.ElementwiseChain().__call__, tf.random.stateless_normal([2, 8, 8, 16], seed=[0, 1])
    else:
        fn, x = lenet5.LeNet5Module(), tf.random.stateless_normal([4, 32, 32, 1], seed=[0, 2])
    default, xla = tf.function(fn)(x), tf.function(fn, jit_compile=True)(x)
    assert fusion_lib.max_abs_diff(default, xla) <= fusion_lib.TOLERANCE
    assert float(tf.reduce_max(tf.abs(default))) > 0.01  # not trivially zero


def test_xla_training_step_agrees_with_default():
    x = tf.random.stateless_normal([8, 32, 32, 1], seed=[0, 3])
    y = tf.constant(np.arange(8) % 10, tf.int32)
    nets = [lenet5.LeNet5Module(seed=1), lenet5.LeNet5Module(seed=1)]
    before = nets[0].trainable_variables[0].numpy().copy()
    losses = [tf.function(fusion_lib.sgd_step(nets[0], 0.1))(x, y),
              tf.function(fusion_lib.sgd_step(nets[1], 0.1), jit_compile=True)(x, y)]
    assert fusion_lib.max_abs_diff(losses[0], losses[1]) <= fusion_lib.TOLERANCE
    after = [[v.numpy() for v in n.trainable_variables] for n in nets]
    assert fusion_lib.max_abs_diff(after[0], after[1]) <= fusion_lib.TOLERANCE
    assert np.abs(after[0][0] - before).max() > 0  # the step did update the weights


def test_compare_reports_the_fused_and_unfused_graphs():
    rows = fusion_lib.exp1_conv_bias_relu([SHAPE], warmup=0, repeats=1)
    unfused, fused = rows
    # the partition graph: plain kernels, or their oneDNN versions (_MklNative*) when oneDNN is on,
    # whose own graph rewrite merges Conv2D + BiasAdd even with the remapper off
    from tfbench.timing import onednn_enabled

    if onednn_enabled():  # AVX-512 CPUs by default
        assert (unfused.extra["graph"], fused.extra["graph"]) == ("Relu+_MklNativeConv2DWithBias",
                                                                  "_MklNativeFusedConv2D")
    else:  # AVX2-only CPUs by default, or TF_ENABLE_ONEDNN_OPTS=0
        assert (unfused.extra["graph"], fused.extra["graph"]) == ("BiasAdd+Conv2D+Relu", "_FusedConv2D")
    assert fused.extra["agree"] and fused.extra["max_abs_diff"] <= fusion_lib.TOLERANCE
    assert fused.extra["vs"] == unfused.extra["variant"] and unfused.extra["vs"] == ""
    assert fused.extra["speedup"] == pytest.approx(unfused.median_ms / fused.median_ms)


def test_hlo_before_and_after_fusion(tmp_path):
    hlo = fusion_lib.write_hlo(tmp_path, (1, 4, 4, 8))
    before, after = hlo["hlo"]["entry_ops"], hlo["optimized_hlo"]["entry_ops"]
    assert hlo["hlo"]["kernels"] >= blocks.ElementwiseChain.NUM_OPS  # one HLO op (or more) per TF op
    assert after.get("fusion", 0) >= 1 and hlo["optimized_hlo"]["kernels"] < hlo["hlo"]["kernels"]
    assert {"tanh", "logistic", "abs"} <= set(before)
    assert (tmp_path / "chain-hlo-after.txt").read_text().count("fused_computation") >= 1


def test_hlo_entry_ops_parses_an_entry_computation():
    text = ("HloModule m\n\n%fused (p: f32[2]) -> f32[2] {\n  ROOT %t = f32[2]{0} tanh(f32[2]{0} %p)\n}\n\n"
            "ENTRY %main (a: f32[2]) -> f32[2] {\n  %a = f32[2]{0} parameter(0)\n"
            "  ROOT %f = f32[2]{0} fusion(f32[2]{0} %a), kind=kLoop, calls=%fused\n}\n")
    assert fusion_lib.hlo_entry_ops(text) == {"parameter": 1, "fusion": 1}


def test_run_benchmark_quick_writes_json(tmp_path):
    data = fusion.run_benchmark(["--quick", "--warmup", "0", "--repeats", "1", "--logdir", str(tmp_path)])
    (path,) = (tmp_path / "bench").glob("fusion-*.json")
    saved = json.loads(path.read_text())
    assert saved["bench"] == "fusion" and saved["rows"] == data["rows"]
    assert {r["experiment"][0] for r in saved["rows"]} == {"1", "2", "3", "4"}
    assert all(r["agree"] for r in saved["rows"])
    assert saved["ratios"] and all(v > 0 for v in saved["ratios"].values())
    assert isinstance(saved["onednn"], bool)


def test_bad_experiment_list_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--experiments"):
        fusion.run_benchmark(["--experiments", "1,7", "--logdir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:  # argparse: the registry's size rule for VGG19
        fusion.run_benchmark(["--image-size", "40", "--logdir", str(tmp_path)])
    assert exit_info.value.code == 2


def test_cli_user_error_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tfbench.fusion", "--experiments", "x", "--logdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --experiments") and "Traceback" not in proc.stderr


def test_main_writes_one_run_with_text_cards_and_variant_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert fusion.main(["--quick", "--warmup", "0", "--repeats", "1", "--experiments", "1",
                        "--logdir", str(tmp_path)]) == 0
    (run,) = (tmp_path / "fusion").iterdir()
    assert {p.parent for p in run.rglob("events.out.tfevents.*")} == {run / "results"}  # one TensorBoard run
    acc = EventAccumulator(str(run / "results"))
    acc.Reload()
    tags = acc.Tags()["tensors"]
    (card,) = [t for t in tags if t.startswith("fusion/")]
    text = tf.make_ndarray(acc.Tensors(card)[0].tensor_proto).item().decode()
    assert "| shape | variant | median_ms |" in text and "FusedConv2D" in text
    medians = [t for t in tags if t.startswith("median_ms/")]
    assert len(medians) >= 2 and {t.replace("median_ms/", "speedup/", 1) for t in medians} <= set(tags)
