"""Tests for tfbench.graphs: grappler's views of a graph, pass toggles, and the VLOG capture."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tensorflow as tf

from tfbench import graphs
from tfbench.models import vgg19
from tfbench.plumbing.errors import UserError
from tfbench.reporting.summaries import op_counts
from tfbench.rewriting import grappler, passes

FUSED_CONV = ("_FusedConv2D", "_MklNativeFusedConv2D")  # the partition graph holds the oneDNN kernel on oneDNN builds


@pytest.fixture(scope="module")
def conv_workload() -> passes.Workload:
    return passes.build_workload("conv_bias_relu", size=8)


def test_count_table_shows_conv_bias_relu_fused(conv_workload):
    rows = {op: (pre, post, part) for op, pre, post, part in graphs.count_table(passes.capture(conv_workload))}
    for op in ("Conv2D", "BiasAdd", "Relu"):
        assert rows[op][0] == 1 and rows[op][1] == 0, op
    assert rows["_FusedConv2D"][1] == 1
    assert sum(rows.get(op, (0, 0, 0))[2] for op in FUSED_CONV) == 1
    text = graphs.format_count_table(list(graphs.count_table(passes.capture(conv_workload))))
    assert "_FusedConv2D" in text and "<- changed" in text


def test_disabling_remapping_removes_the_fusion(conv_workload):
    post = op_counts(passes.capture(conv_workload, ["remapping"]).post_optimization)
    assert post["Conv2D"] == 1 and post["BiasAdd"] == 1 and post["Relu"] == 1
    assert post["_FusedConv2D"] == 0


def test_grappler_options_are_restored(conv_workload):
    before = tf.config.optimizer.get_experimental_options()
    with grappler.grappler_options(remapping=False, constant_folding=False):
        assert tf.config.optimizer.get_experimental_options()["remapping"] is False
    assert tf.config.optimizer.get_experimental_options() == before
    # and a function instantiated afterwards is fused again: nothing leaked
    assert op_counts(passes.capture(conv_workload).post_optimization)["_FusedConv2D"] == 1


def test_options_restored_after_an_exception():
    before = tf.config.optimizer.get_experimental_options()
    with pytest.raises(RuntimeError):
        with grappler.grappler_options(remapping=False):
            raise RuntimeError("boom")
    assert tf.config.optimizer.get_experimental_options() == before


def test_ablation_attributes_the_fusion_to_remapping(conv_workload):
    rows = {r["pass_off"]: r for r in passes.ablate(conv_workload, ["remapping", "constfold", "meta"])}
    assert "+Conv2D 1" in rows["remapping"]["difference_vs_all_on"]
    assert "-_FusedConv2D 1" in rows["remapping"]["difference_vs_all_on"]
    assert rows["constfold"]["difference_vs_all_on"] == "(same)"
    assert rows["meta"]["nodes"] > rows["meta"]["nodes_all_on"]


def test_unknown_pass_is_a_user_error():
    with pytest.raises(UserError, match="remaping"):
        graphs.parse_pass_list("remapping,remaping")


def test_vgg19_every_conv_and_fc_is_fused():
    workload = passes.build_workload("vgg19", size=32)
    post = op_counts(passes.capture(workload).post_optimization)
    specs = vgg19.layer_specs(input_size=32)
    assert post["_FusedConv2D"] == sum(s.kind == "conv" for s in specs)
    assert post["_FusedMatMul"] == sum(s.kind == "fc" for s in specs)
    assert post["Conv2D"] == 0 and post["MatMul"] == 0 and post["Relu"] == 0


def test_keras_batch_norm_is_not_folded_but_fused_batch_norm_is():
    keras_post = op_counts(passes.capture(passes.build_workload("conv_bn_relu", size=8)).post_optimization)
    assert keras_post["Conv2D"] == 1 and keras_post["Rsqrt"] == 1 and keras_post["_FusedConv2D"] == 0
    res_post = op_counts(passes.capture(passes.build_workload("resnet_block", size=8)).post_optimization)
    assert res_post["FusedBatchNormV3"] == 0 and res_post["_FusedConv2D"] == 2


def test_show_writes_tensorboard_runs(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert graphs.main(["show", "conv_bias_relu", "--image-size", "8", "--logdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "_FusedConv2D" in out
    (run,) = (tmp_path / "graphs").iterdir()
    ops = {}
    for label in ("pre", "post", "partition"):
        acc = EventAccumulator(str(run / "conv_bias_relu" / label))
        acc.Reload()
        ops[label] = {node.op for node in acc.Graph().node}
    assert "Conv2D" in ops["pre"] and "_FusedConv2D" not in ops["pre"]
    assert "_FusedConv2D" in ops["post"] and "Conv2D" not in ops["post"]
    assert ops["partition"] & set(FUSED_CONV)


def test_parse_vlog_reads_pass_sizes():
    text = ("I0000 00:00:1.2 5 meta_optimizer.cc:1059] Starting optimization for grappler item: __inference_f_9\n"
            "I0000 00:00:1.2 5 meta_optimizer.cc:973] remapper: Graph size after: 9 nodes (-2), 10 edges (-2), "
            "time = 0.279ms.\n"
            "I0000 00:00:1.2 5 remapper.cc:3479] Fuse Conv2D with BiasAdd and Relu: activation=Relu\n")
    summary = passes.parse_vlog(text)
    (stat,) = summary.passes
    assert (stat.item, stat.name, stat.nodes, stat.nodes_delta, stat.time_ms) == (
        "__inference_f_9", "remapper", 9, -2, 0.279)
    assert summary.messages["remapper"] == ["Fuse Conv2D with BiasAdd and Relu: activation=Relu"]
    assert "11 -> 9" in passes.format_vlog_summary(summary)


def test_vlog_capture_finds_the_remapper():
    text = passes.capture_vlog("conv_bias_relu", size=8)
    summary = passes.parse_vlog(text)
    assert any("Fuse Conv2D with BiasAdd and Relu" in m for m in summary.messages.get("remapper", []))
    remapper = [s for s in summary.passes if s.name == "remapper"]
    assert remapper and remapper[0].nodes_delta < 0


def test_cli_bad_pass_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "tfbench.graphs", "show", "lenet5", "--disable", "nosuchpass"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown grappler pass 'nosuchpass'") and "Traceback" not in proc.stderr


def _lenet5_counts(env: dict[str, str], logdir) -> tuple[bool, dict[str, tuple[int, int]]]:
    """Whether oneDNN was on, and ``op -> (pre, post)``, from ``graphs show lenet5`` in a fresh process."""
    import os

    proc = subprocess.run([sys.executable, "-m", "tfbench.graphs", "show", "lenet5", "--logdir", str(logdir)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1].isdigit() and parts[2].isdigit():
            counts[parts[0]] = (int(parts[1]), int(parts[2]))
    return "oneDNN kernels: on" in proc.stdout, counts


@pytest.mark.parametrize("env", [{}, {"TF_ENABLE_ONEDNN_OPTS": "0"}], ids=["default", "onednn-off"])
def test_lenet5_tanh_fusion_depends_on_onednn(env, tmp_path):
    """Eigen's remapper leaves all 4 Tanh (42 -> 35 nodes); with oneDNN on, it also fuses MatMul+BiasAdd+Tanh
    (2 Tanh remain, 42 -> 33).  oneDNN is on by default on AVX-512 CPUs, off on AVX2-only ones;
    TF_ENABLE_ONEDNN_OPTS=0 turns it off everywhere.
    """
    onednn, counts = _lenet5_counts(env, tmp_path)
    if env:
        assert not onednn
    assert counts["Tanh"][0] == 4 and counts["total"][0] == 42
    assert counts["_FusedConv2D"][1] == 2 and counts["_FusedMatMul"][1] == 3
    if onednn:
        assert counts["Tanh"][1] == 2 and counts["total"][1] == 33
    else:
        assert counts["Tanh"][1] == 4 and counts["total"][1] == 35
