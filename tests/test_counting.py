"""Counting every layer (exercises 3.1, 3.2, 3.7): recurrent and attention layers, custom layers from their
graphs, the call graph (shared layers, nested models at the caller's shapes), and the cross-check.

Each test builds its model and compares with a closed-form count written here, and with the model's
own traced graph counted op by op (:mod:`tfbench.models.graph_count`), an independent reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from keras import layers as L

import tfbench
from tfbench.inspection import tf_log
from tfbench.models import load
from tfbench.models.counting import count_model
from tfbench.models.cross_check import cross_check, profiler_flops
from tfbench.models.graph_count import count_layer_graph
from tfbench.models.layer_rules import USER_RULES, Work, register_counter
from tfbench.plumbing.errors import UserError


def counted(model: keras.Model, **kwargs):
    """The counts and the cross-check of ``model`` (rules against its graph and the profiler)."""
    counts = count_model(model, **kwargs)
    profile = profiler_flops(lambda x: model(x, training=False), counts.input_shape,
                             str(model.inputs[0].dtype) if hasattr(model, "inputs") else "float32")
    return counts, cross_check(counts.total("macs"), profile)


def rows(counts) -> dict:
    return {c.name: c for c in counts.layers}


def seq_model(layer, shape) -> keras.Model:
    keras.utils.set_random_seed(0)
    i = keras.Input(shape)
    return keras.Model(i, layer(i))


@pytest.mark.parametrize("kind, macs, params, extra_mults", [
    # T=7 steps, d=5 inputs, u=4 units: gates x u x (d + u) per step
    ("SimpleRNN", 7 * 1 * 4 * (5 + 4), 4 * (5 + 4 + 1), 0),
    ("LSTM", 7 * 4 * 4 * (5 + 4), 4 * 4 * (5 + 4 + 1), 7 * 3 * 4),  # c = f*c + i*g, h = o*tanh(c)
    ("GRU", 7 * 3 * 4 * (5 + 4), 3 * 4 * (5 + 4 + 2), 7 * 3 * 4),  # reset_after: two biases; r*(hU), z*h, (1-z)*hh
    ("GRU_before", 7 * 3 * 4 * (5 + 4), 3 * 4 * (5 + 4 + 1), 7 * 3 * 4),  # reset_after=False: (r*h)U
])
def test_recurrent_layers_match_their_closed_forms_and_their_graph(kind, macs, params, extra_mults):
    layer = L.GRU(4, reset_after=False) if kind == "GRU_before" else getattr(L, kind)(4)
    model = seq_model(layer, (7, 5))
    counts, check = counted(model)
    row = counts.layers[0]
    assert row.macs == macs and row.params == params == model.count_params()
    assert row.mults == macs + extra_mults
    assert check["graph_macs"] == macs and check["rules_vs_graph"] == 0  # every loop iteration counted
    assert any("loop bodies" in b for b in check["blind_spots"])  # the profiler sees none of it


def test_text_classifier_of_the_course_is_counted_in_full():
    keras.utils.set_random_seed(0)
    i = keras.Input((100,), dtype="int32")
    x = L.LSTM(64)(L.Embedding(20000, 64)(i))
    model = keras.Model(i, L.Dense(1)(x))
    counts, check = counted(model)
    assert counts.total("macs") == 100 * 4 * 64 * (64 + 64) + 64  # the Embedding is a lookup: no MACs
    assert rows(counts)["embedding"].params == 20000 * 64 and check["rules_vs_graph"] == 0


def test_bidirectional_stacked_and_convlstm():
    keras.utils.set_random_seed(0)
    i = keras.Input((5, 2))
    x = L.LSTM(4, return_sequences=True, name="first")(i)
    x = L.Bidirectional(L.GRU(3), merge_mode="sum", name="both")(x)
    model = keras.Model(i, x)
    counts, check = counted(model)
    r = rows(counts)
    assert r["first"].macs == 5 * 4 * 4 * (2 + 4)
    assert r["both"].macs == 2 * 5 * 3 * 3 * (4 + 3)  # forward and backward GRU over the 4-wide sequence
    assert r["both"].adds == 2 * (5 * (3 * 3 * (4 + 3) - 2 * 9 + 9 + 9 + 9 + 2 * 3)) + 3  # + the sum merge
    assert check["graph_macs"] == counts.total("macs") and counts.total("params") == model.count_params()

    conv = seq_model(L.ConvLSTM2D(4, 3, padding="same", name="convlstm"), (3, 5, 5, 2))
    counts, check = counted(conv)
    # 3 steps x 5x5 positions x 4 gates x 4 filters x 3x3 kernel x (2 input + 4 state channels)
    assert counts.layers[0].macs == 3 * 25 * 4 * 4 * 9 * (2 + 4) == check["graph_macs"]


def test_dense_on_a_sequence_and_masked_cross_attention_agree_with_graph_and_profiler():
    keras.utils.set_random_seed(0)
    t, d, heads, k = 4, 8, 2, 8
    i = keras.Input((t, d))
    x = L.Dense(d, name="dense3d")(i)  # a Dense on a 3-D input: t x d x d MACs
    mask = L.Lambda(lambda z: keras.ops.ones((keras.ops.shape(z)[0], t, t), "bool"), name="mask")(x)
    a = L.MultiHeadAttention(heads, k, name="mha")(x, i, attention_mask=mask)
    model = keras.Model(i, a)
    counts, check = counted(model)
    r = rows(counts)
    assert r["dense3d"].macs == t * d * d
    # Q, K, V projections, scores, weighted sum, output projection; the mask is not the key
    assert r["mha"].macs == 3 * t * d * heads * k + 2 * heads * t * t * k + t * heads * k * d == 2560
    assert check["rules_vs_graph"] == 0 and check["profiler_vs_graph"] == 0
    assert f"the profiler counts Einsum as 0: {2 * heads * t * t * k:,} MACs it cannot see" in check["blind_spots"]


class LoopedEinsum(L.Layer):
    """A custom layer without a rule: an einsum, then a matmul in a loop that runs 5 times."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], shape[-1]), initializer="ones")

    def call(self, x):
        y = tf.einsum("btc,cd->btd", x, self.w)
        _, h = tf.while_loop(lambda n, h: n < 5, lambda n, h: (n + 1, tf.matmul(h, self.w) + 1.0),
                             (tf.constant(0), y))
        return h


def test_a_custom_layer_is_counted_from_its_graph_loop_trip_count_included():
    model = seq_model(LoopedEinsum(name="looped"), (4, 3))
    counts, check = counted(model)
    row = counts.layers[0]
    assert row.method == "graph" and row.counted
    assert row.macs == 4 * 3 * 3 * (1 + 5)  # the einsum once, the matmul 5 times
    assert row.adds == 4 * 3 * 2 * (1 + 5) + 5 * 4 * 3  # sums of 3 products, the + 1.0 in each iteration
    # (the loop counter's integer additions are bookkeeping, not counted)
    assert check["graph_macs"] == row.macs


def test_a_registered_counter_is_used_for_its_layer_type():
    class Doubler(L.Layer):
        def call(self, x):
            return 2 * x

    register_counter(Doubler, lambda call: Work(mults=call.outputs))
    try:
        counts = count_model(seq_model(Doubler(name="doubler"), (6,)))
    finally:
        USER_RULES.pop(Doubler)
    assert counts.layers[0].method == "registered" and counts.layers[0].mults == 6


def test_a_shared_layer_counts_once_per_call_and_its_weights_once():
    i = keras.Input((4,))
    shared = L.Dense(16, name="shared")
    model = keras.Model(i, L.Add()([shared(i), shared(L.ReLU()(i))]))
    counts, check = counted(model)
    r = rows(counts)
    assert r["shared"].macs == r["shared#2"].macs == 4 * 16 and counts.total("macs") == 128
    assert counts.total("params") == model.count_params() == 4 * 16 + 16
    assert check["graph_macs"] == 128


def test_a_free_size_base_model_inside_a_fixed_outer_model_is_counted_at_the_outer_shape():
    def base(shape):
        keras.utils.set_random_seed(0)
        return keras.applications.MobileNetV3Small(input_shape=shape, include_top=False, weights=None,
                                                   minimalistic=True, alpha=0.75)

    i = keras.Input((64, 64, 3))
    outer = keras.Model(i, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(base((None, None, 3))(i))))
    fixed = base((64, 64, 3))
    nested = count_model(outer)
    alone = count_model(fixed)
    head = rows(nested)["head"]
    assert nested.total("macs") == alone.total("macs") + head.macs > 0
    assert nested.total("params") + nested.total("non_trainable_params") == outer.count_params()


def test_roofline_rows_are_keyed_per_call():
    from tfbench.inspection.roofline import layer_points

    def block(name):
        j = keras.Input((8,))
        return keras.Model(j, L.Dense(8, name="fc")(j), name=name)

    i = keras.Input((8,))
    model = keras.Model(i, block("b")(block("a")(i)))
    points = layer_points("m", model, 2, warmup=0, repeats=1)
    assert sorted(p.name for p in points) == ["a/fc", "b/fc"] and all(p.flops == 2 * 2 * 8 * 8 for p in points)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.fc = L.Dense(4)

    def call(self, x):
        return self.fc(x)


def test_a_subclassed_model_is_counted_or_refused_clearly():
    with pytest.raises(UserError, match="subclassed keras.Model"):
        tfbench.inspect_model(Subclassed(), quick=True)
    report = tfbench.inspect_model(Subclassed(), input_shape=(3,), quick=True)
    assert report.macs == 3 * 4 and report.params == 3 * 4 + 4 and report.counts.layers[0].method == "graph"


def test_a_model_rebuilt_at_an_input_shape_keeps_its_input_dtype():
    i = keras.Input((None,), dtype="int32")
    model = keras.Model(i, L.Dense(2)(L.Embedding(50, 3)(i)))
    loaded = load.from_object(model, input_shape=(6,))
    assert loaded.input_dtype == "int32" and loaded.keras_model.inputs[0].dtype == "int32"
    assert count_model(loaded.keras_model).total("macs") == 6 * 3 * 2


def test_convolutions_add_by_one_convention_the_graphs_own():
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 4))
    layers = [L.Conv2D(6, 3, padding="same", name="plain"), L.DepthwiseConv2D(3, padding="same", name="depthwise"),
              L.SeparableConv2D(6, 3, padding="same", name="separable"),
              L.Conv2DTranspose(6, 3, strides=2, padding="same", name="transposed")]
    model = keras.Model(i, [layer(i) for layer in layers])
    counts = rows(count_model(model))
    for layer in layers:
        row = counts[layer.name]
        graph = count_layer_graph(layer, (keras.KerasTensor((None, 8, 8, 4)),), {})
        assert (row.macs, row.mults, row.adds) == (graph.macs, graph.mults, graph.adds), row.name


def test_a_failed_grappler_pass_is_named_in_the_report_and_json(tmp_path):
    keras.utils.set_random_seed(0)
    i = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same")(i)
    model = keras.Model(i, L.Add()([x, L.DepthwiseConv2D(3, padding="same")(x)]))
    report = tfbench.inspect_model(model, repeats=1, ablate=False, logdir=tmp_path)
    data = json.loads(Path(report.json_path).read_text())
    g = report.grappler
    if g.failures:  # TensorFlow 2.21's remapper breaks this graph; the report must say so, and which pass
        assert g.failing_pass == "remapping" and data["grappler"]["failing_pass"] == "remapping"
        assert "FAILED in TensorFlow's log" in report.sections()["grappler"]
        assert data["tf_log"]["failures"] and any("failures:" in n for n in report.notes)
    else:  # a TensorFlow without the bug: nothing named, and grappler really optimised the graph
        assert g.failing_pass is None and g.nodes_after < g.nodes_before
    assert data["grappler"]["failures"] == g.failures


def test_tensorflow_log_is_summarised_and_failures_grouped():
    text = ("E0000 00:00:1.2  29680 meta_optimizer.cc:954] remapper failed: NOT_FOUND: Op type not registered ''\n"
            * 30 + "W0000 00:00:1.3  29680 graph_view.cc:850] No registered '' OpKernel\n")
    summary = tf_log.summarise(text)
    assert summary.lines == 31 and summary.distinct == 2
    assert summary.failures == {"remapper": {"count": 30, "message": "NOT_FOUND: Op type not registered ''"}}
    assert "remapper x 30" in summary.line()
