"""Conformance of the counts: every ``keras.applications`` architecture and a set of sequence and attention
models, counted by ``inspect_model`` and by independent references (exercises 3.1, 3.2, 3.7).

    python -m tfbench.bench counts [--models ResNet50 text_classifier ...] [--input-size 128] [--no-profiler]

For each model (random weights, ``weights=None``: nothing is downloaded):

- **ours**: :func:`tfbench.inspect_model` with ``quick=True``: parameters and MACs from the layer rules;
- **graph**: the model's inference ``tf.function`` at batch 1 counted op by op
  (:mod:`tfbench.models.graph_count`: function bodies, every loop iteration);
- **closed form**: for the sequence and attention models, the MACs written out below by hand
  (``T x gates x u x (d + u)`` for a recurrent layer, the projections, scores and weighted sums for
  attention), not computed by the rules;
- **profiler**: TensorFlow's profiler on the op types it counts, and what it cannot see, by name.

A row is ``exact`` when the parameters equal Keras' ``count_params()`` and our MACs are within 0.1%
of the reference (the closed form where there is one, else the graph); any other row says why.
The JSON goes to ``logs/bench/counts-<time>.json``; docs/inspect.md shows the table.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Sequence

from tfbench.plumbing import cli

TOLERANCE = 0.001  # 0.1%


def _text_classifier() -> Any:
    import keras
    from keras import layers as L

    i = keras.Input((100,), dtype="int32")
    x = L.Embedding(20000, 64)(i)
    x = L.GRU(32)(L.LSTM(64, return_sequences=True)(x))
    return keras.Model(i, L.Dense(1)(x), name="text_classifier")


def _vit_small() -> Any:
    import keras
    from keras import layers as L

    i = keras.Input((32, 32, 3))
    x = L.Reshape((64, 64))(L.Conv2D(64, 4, strides=4)(i))  # 8 x 8 patches of 4 x 4 x 3, width 64
    x = _position_layer()(x)
    for _ in range(2):
        a = L.MultiHeadAttention(4, 16)(L.LayerNormalization()(x), L.LayerNormalization()(x))
        x = L.Add()([x, a])
        m = L.Dense(64)(L.Dense(128, activation="gelu")(L.LayerNormalization()(x)))
        x = L.Add()([x, m])
    return keras.Model(i, L.Dense(10)(L.GlobalAveragePooling1D()(x)), name="vit_small")


def _position_layer() -> Any:
    """A learned position embedding added to the patches: a layer without a counting rule (its graph counts)."""
    from keras import layers as L

    class Position(L.Layer):
        def build(self, shape):
            self.table = self.add_weight(shape=tuple(shape[1:]), initializer="zeros")

        def call(self, x):
            return x + self.table

    return Position()


def _bidirectional() -> Any:
    import keras
    from keras import layers as L

    i = keras.Input((50, 16))
    x = L.Bidirectional(L.GRU(32, return_sequences=True))(i)
    x = L.Bidirectional(L.LSTM(16))(x)
    return keras.Model(i, L.Dense(5)(x), name="bidirectional_rnn")


def _convlstm() -> Any:
    import keras
    from keras import layers as L

    i = keras.Input((6, 16, 16, 3))
    x = L.ConvLSTM2D(8, 3, padding="same")(i)
    return keras.Model(i, L.Conv2D(4, 1)(x), name="convlstm")


def _attention() -> Any:
    import keras
    from keras import layers as L

    i = keras.Input((20, 32))
    q = L.Dense(32)(i)
    a = L.Attention(use_scale=True)([q, i])
    b = L.AdditiveAttention()([a, i])
    return keras.Model(i, L.TimeDistributed(L.Dense(8))(b), name="attention_seq")


def _rnn_einsum() -> Any:
    import keras
    from keras import layers as L

    i = keras.Input((10, 8))
    x = L.SimpleRNN(16, return_sequences=True)(i)
    return keras.Model(i, L.EinsumDense("btd,de->bte", output_shape=(10, 4))(x), name="rnn_einsum")


#: name -> (builder, MACs in closed form, how that number is made)
SEQUENCE_MODELS: dict[str, tuple[Callable[[], Any], int, str]] = {
    "text_classifier": (_text_classifier, 100 * 4 * 64 * (64 + 64) + 100 * 3 * 32 * (64 + 32) + 32,
                        "LSTM 100x4x64x(64+64) + GRU 100x3x32x(64+32) + Dense 32"),
    "vit_small": (_vit_small, 64 * 48 * 64 + 2 * (3 * 64 * 64 * 64 + 2 * 4 * 64 * 64 * 16 + 64 * 64 * 64
                                                  + 2 * 64 * 64 * 128) + 64 * 10,
                  "patches 64x48x64 + 2 x (QKV 3x64x64x64 + scores, sum 2x4x64x64x16 + out 64x64x64 + MLP "
                  "2x64x64x128) + head 64x10"),
    "bidirectional_rnn": (_bidirectional, 2 * 50 * 3 * 32 * (16 + 32) + 2 * 50 * 4 * 16 * (64 + 16) + 32 * 5,
                          "2 x GRU 50x3x32x(16+32) + 2 x LSTM 50x4x16x(64+16) + Dense 32x5"),
    "convlstm": (_convlstm, 6 * 16 * 16 * 4 * 8 * 9 * (3 + 8) + 16 * 16 * 8 * 4,
                 "6 steps x 16x16 x 4 gates x 8 filters x 3x3 x (3+8) + Conv2D 16x16x8x4"),
    "attention_seq": (_attention, 20 * 32 * 32 + 2 * 20 * 20 * 32 + 20 * 20 * 32 + 20 * 32 * 8,
                      "Dense 20x32x32 + Attention 2x20x20x32 + AdditiveAttention's sum 20x20x32 + "
                      "TimeDistributed(Dense) 20x32x8"),
    "rnn_einsum": (_rnn_einsum, 10 * 16 * (8 + 16) + 10 * 16 * 4, "SimpleRNN 10x16x(8+16) + EinsumDense 10x16x4"),
}


def architectures() -> list[str]:
    """Every architecture ``keras.applications`` offers (its capitalised builders)."""
    import keras

    return sorted(n for n in dir(keras.applications) if n[:1].isupper())


def _build(name: str, input_size: int | None) -> tuple[Any, int | None, str]:
    import keras

    if name in SEQUENCE_MODELS:
        builder, closed, how = SEQUENCE_MODELS[name]
        keras.utils.set_random_seed(0)
        return builder(), closed, how
    kwargs: dict[str, Any] = {"weights": None}
    if input_size:
        kwargs["input_shape"] = (input_size, input_size, 3)
    model = getattr(keras.applications, name)(**kwargs)
    if any(d is None for d in model.inputs[0].shape[1:]):  # MobileNetV3 leaves its size free: its usual 224
        del model
        model = getattr(keras.applications, name)(**{**kwargs, "input_shape": (224, 224, 3)})
    return model, None, ""


def count_one(name: str, *, input_size: int | None = None, profiler: bool = True) -> dict[str, Any]:
    """One row of the table: our counts, the references, the verdict."""
    import tfbench
    from tfbench.models.cross_check import cross_check, profiler_flops

    start = time.perf_counter()
    model, closed, how = _build(name, input_size)
    report = tfbench.inspect_model(model, quick=True, name=name)
    keras_params = int(model.count_params())
    row: dict[str, Any] = {"model": name, "input": "x".join(map(str, report.input_shape)), "params": report.params,
                           "keras_params": keras_params, "macs": report.macs, "closed_form_macs": closed,
                           "closed_form": how}
    shape, dtype = report.input_shape, str(model.inputs[0].dtype)
    prof = profiler_flops(lambda x: model(x, training=False), shape, dtype) if profiler else {}
    if prof:
        check = cross_check(report.macs, prof)
        row.update(graph_macs=check["graph_macs"], profiler_compared_macs=check["profiler_on_compared"],
                   graph_compared_macs=check["graph_on_compared"], profiler_vs_graph=check["profiler_vs_graph"],
                   blind_spots=check["blind_spots"], graph_unknown_ops=check["graph_unknown_ops"])
    row["uncounted"] = report.uncounted
    reference = closed if closed is not None else row.get("graph_macs")
    row["reference"] = "closed form" if closed is not None else ("graph" if reference is not None else "none")
    row["relative_difference"] = (abs(report.macs - reference) / reference if reference else None)
    row["verdict"] = _verdict(row)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def _verdict(row: dict[str, Any]) -> str:
    why = []
    if row["params"] != row["keras_params"]:
        why.append(f"params {row['params']:,} vs Keras {row['keras_params']:,}")
    rel = row["relative_difference"]
    if rel is None:
        why.append("no reference MACs")
    elif rel > TOLERANCE:
        why.append(f"MACs {rel:.3%} from the {row['reference']}")
    if row.get("graph_macs") is not None and row["closed_form_macs"] is not None \
            and row["graph_macs"] != row["closed_form_macs"]:
        why.append(f"graph {row['graph_macs']:,} vs closed form {row['closed_form_macs']:,}")
    if row["uncounted"]:
        why.append("uncounted: " + "; ".join(row["uncounted"]))
    return "exact" if not why else "; ".join(why)


def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """Count every model; print each row as it finishes; write the JSON under logs/bench/."""
    parser = cli.parser("bench counts", "inspect's counts against Keras, the model's graph, closed forms and "
                                        "TensorFlow's profiler, on every keras.applications architecture")
    parser.add_argument("--models", nargs="+", default=None,
                        help="architectures (keras.applications names) and sequence models "
                             f"({', '.join(SEQUENCE_MODELS)}); default: all")
    parser.add_argument("--input-size", type=cli.positive_int, default=None,
                        help="image side for the keras.applications models (default: each one's own)")
    parser.add_argument("--no-profiler", action="store_true", help="ours against Keras and closed forms only")
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    args = cli.parse(parser, argv)
    import keras

    from tfbench import timing
    from tfbench.plumbing.errors import UserError, first_line

    names = args.models or [*architectures(), *SEQUENCE_MODELS]
    unknown = [n for n in names if n not in SEQUENCE_MODELS and n not in architectures()]
    if unknown:
        raise UserError(f"--models: unknown {', '.join(unknown)}; expected keras.applications names "
                        f"({', '.join(architectures())}) or {', '.join(SEQUENCE_MODELS)}")
    rows = []
    for name in names:
        try:
            row = count_one(name, input_size=args.input_size, profiler=not args.no_profiler)
        except (UserError, ValueError, TypeError, MemoryError) as err:
            row = {"model": name, "verdict": f"failed: {type(err).__name__}: {first_line(err, 200)}"}
        rows.append(row)
        print(f"counts: {name}: {row.get('macs')} MACs, {row['verdict']} ({row.get('seconds', '-')} s)", flush=True)
        keras.backend.clear_session()
        gc.collect()
    exact = sum(r["verdict"] == "exact" for r in rows)
    table = [{k: r.get(k) for k in ("model", "input", "params", "macs", "reference", "relative_difference",
                                    "verdict")} for r in rows]
    data = timing.report("counts", table, {}, logdir=args.logdir,
                         extra={"details": rows, "tolerance": TOLERANCE, "exact": exact})
    print(f"exact: {exact} of {len(rows)} models (parameters equal, MACs within {TOLERANCE:.1%} of the reference)")
    return data
