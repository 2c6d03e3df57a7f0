"""Readable TensorBoard graphs: renames keep every edge, fused nodes carry what they fused, on oneDNN builds and off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import GRAPH, EventAccumulator

from tfbench.reporting import graph_views
from tfbench.rewriting import passes


def _graph(run: Path) -> tf.compat.v1.GraphDef:
    acc = EventAccumulator(str(run), size_guidance={GRAPH: 1})
    acc.Reload()
    return acc.Graph()


def test_rename_updates_data_control_and_port_references():
    graph_def = tf.compat.v1.GraphDef()
    a, b = graph_def.node.add(), graph_def.node.add()
    a.name, a.op = "old", "Split"
    b.name, b.op = "user", "AddV2"
    b.input.extend(["old", "old:1", "^old"])
    out = graph_views.rename(graph_def, {"old": "scope/new"})
    assert [n.name for n in out.node] == ["scope/new", "user"]
    assert list(out.node[1].input) == ["scope/new", "scope/new:1", "^scope/new"]
    assert graph_def.node[0].name == "old"  # the original is left alone


def test_conv_bias_relu_views_are_renamed_and_still_connected():
    workload = passes.build_workload("conv_bias_relu", size=8)
    views = passes.capture(workload).readable()
    pre, post = views["pre"], views["post"]
    assert set(graph_views.top_level(post)) == {"x", "conv_bias_relu", "output"}
    names = {n.name for n in post.node}
    assert "conv_bias_relu/FusedConv2D+BiasAdd+Relu" in names
    assert {"conv_bias_relu/kernel/resource", "conv_bias_relu/kernel/read", "conv_bias_relu/bias/read"} <= names
    for graph_def in (pre, post):  # every input names a node of the graph: no edge was lost in renaming
        for node in graph_def.node:
            for ref in node.input:
                assert ref.lstrip("^").split(":")[0] in {n.name for n in graph_def.node}, (node.name, ref)
    changes = graph_views.grappler_changes(passes.capture(workload).pre_optimization,
                                           passes.capture(workload).post_optimization)
    assert changes.fused == {"FusedConv2D+BiasAdd+Relu": 1}
    assert changes.before["Conv2D"] == 1 and changes.after["Conv2D"] == 0 and changes.removed > 0


def test_resnet_block_fuses_conv_and_batch_norm_by_name():
    views = passes.capture(passes.build_workload("resnet_block", size=8)).readable()
    names = [n.name for n in views["post"].node if "Fused" in n.name]
    assert len(names) == 2, names
    assert all(n.startswith("resnet_block/bn") and "FusedConv2D+FusedBatchNorm" in n for n in names), names


def test_traced_graph_has_only_inputs_model_and_outputs_at_top_level():
    from tfbench.models import lenet5

    net = lenet5.LeNet5Module()
    fn = tf.function(net.__call__, input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="images")])
    graph_def = graph_views.readable_traced_graph(fn.get_concrete_function(), ["logits"])
    assert set(graph_views.top_level(graph_def)) == {"images", "lenet5", "logits"}
    assert sum(n.op == "ReadVariableOp" and n.name.endswith("/read") for n in graph_def.node) == 10
    scopes = list(dict.fromkeys(n.name.split("/")[1] for n in graph_def.node if n.name.count("/") > 1))
    assert scopes == ["block1", "block2", "classifier"], scopes
    names = {n.name for n in graph_def.node}
    assert {"lenet5/block1/c1/weights/resource", "lenet5/block1/s2", "lenet5/classifier/output/BiasAdd"} <= names


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_graphs_show_names_every_vgg19_fusion_with_onednn_on_and_off(tmp_path, onednn):
    """``graphs show vgg19`` in a fresh process (oneDNN is chosen at start-up): 19 fused nodes by name."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
    proc = subprocess.run([sys.executable, "-m", "tfbench.graphs", "show", "vgg19", "--image-size", "32",
                           "--logdir", str(tmp_path)], capture_output=True, text=True, timeout=600, env=env,
                          cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"oneDNN kernels: {'on' if onednn == '1' else 'off'}" in proc.stdout
    (run,) = (tmp_path / "graphs").iterdir()
    post = _graph(run / "vgg19" / "post")
    fused = [n.name for n in post.node if "Fused" in n.name]
    assert sum(n.endswith("/FusedConv2D+BiasAdd+Relu") for n in fused) == 16, fused
    assert len(fused) == 19
    partition = _graph(run / "vgg19" / "partition")
    assert sum("FusedConv2D+BiasAdd+Relu" in n.name for n in partition.node) == 16
    scopes = {n.name.split("/")[1] for n in post.node if n.name.startswith("vgg19/")}
    assert {"block1", "block5", "classifier"} <= scopes
    acc = EventAccumulator(str(run / "vgg19" / "post"))
    acc.Reload()
    card = tf.make_ndarray(acc.Tensors("grappler/op_counts")[0].tensor_proto).item().decode()
    assert "| Conv2D | 16 | 0 | -16 |" in card and "16 node(s) `FusedConv2D+BiasAdd+Relu`" in card
