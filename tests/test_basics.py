"""Exercises 4.1 and 4.2: the greeting, A + B through a tf.function input signature, and its graph in TensorBoard."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfbench import basics
from tfbench.plumbing.errors import UserError


def test_hello():
    assert basics.hello() == "Hello, TensorFlow!"


def test_add_takes_b_through_its_signature():
    add = basics.make_add()
    np.testing.assert_array_equal(add(tf.constant([10.0, 20.0, 30.0])).numpy(), [11.0, 22.0, 33.0])
    np.testing.assert_array_equal(add(tf.constant([1.0])).numpy(), [2.0, 3.0, 4.0])  # broadcast
    graph = add.get_concrete_function().graph
    [b] = graph.inputs
    assert b.dtype == tf.float32 and b.shape.as_list() == [None]  # the placeholder's role
    assert [op.type for op in graph.get_operations() if op.name == "A"] == ["Const"]
    assert any(op.type == "AddV2" for op in graph.get_operations())
    with pytest.raises(TypeError):
        add(tf.constant([[1.0, 2.0, 3.0]]))  # rank 2 does not match the signature's [None]


def test_cli_prints_and_writes_the_graph(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = subprocess.run([sys.executable, "-m", "tfbench.basics", "--b", "4", "5", "6", "--logdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "Hello, TensorFlow!"
    assert "A + B = [5.0, 7.0, 9.0]" in out.stdout
    assert out.stderr == ""  # TensorFlow's start-up lines are kept off
    [run] = (tmp_path / "basics").iterdir()
    acc = EventAccumulator(str(run), size_guidance={"tensors": 0})
    acc.Reload()
    assert acc.SummaryMetadata("A_plus_B").plugin_data.plugin_name == "graph_run_metadata_graph"
    run_metadata = tf.compat.v1.RunMetadata.FromString(acc.Tensors("A_plus_B")[0].tensor_proto.string_val[0])
    [graph] = [g.pre_optimization_graph for g in run_metadata.function_graphs
               if any(node.name == "A_plus_B" for node in g.pre_optimization_graph.node)]
    ops = {node.name: node.op for node in graph.node}
    assert ops.get("A") == "Const" and ops.get("b") == "_Arg" and ops.get("A_plus_B") == "AddV2", ops


def test_bad_b_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--b takes 1 or 3 values"):
        basics.main(["--b", "1", "2", "--logdir", str(tmp_path)])
