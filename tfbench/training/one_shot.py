"""One-shot magnitude pruning of your own Keras model: how far do the outputs move, and what do the zeros buy?

The question a practitioner asks before any sparse training: "how much can I prune before the
outputs move?"  No labels are needed.  For each sparsity, every prunable kernel
(:func:`tfbench.training.sparsity.prunable_layers`: Conv2D, DepthwiseConv2D, SeparableConv2D, Dense,
EinsumDense) loses its ``floor(sparsity * size)`` smallest-magnitude weights, each layer alone
(:func:`~tfbench.training.sparsity.magnitude_mask`); biases, norms and embeddings stay as they are.
On one fixed, seeded batch (:func:`probe_batch`) it measures against the dense model:

- the **relative L2 change** of the outputs, ``||y_pruned - y_dense|| / ||y_dense||``;
- the fraction of the batch whose **top-1** (argmax) is unchanged, when the output is one vector per example
  (a model with several outputs gets the L2 change of all of them side by side, and no top-1);
- the weights' **size**: raw bytes (the same, the zeros are stored) and ``np.savez_compressed`` bytes
  (smaller: zeros only save storage once stored sparsely or compressed);
- the **forward time** of both, round robin (each round assigns one state's kernels, untimed, then
  times one call; each round starts one state further on): the same dense kernels multiply the
  zeros too, and the two times side by side show what that costs or saves.

Pruning happens on copies of the kernels; :func:`kernels_restored` puts the model's own values back.
``python -m tfbench.sparsity --model MODEL`` runs it (docs/precision.md).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from tfbench.models.counting import flat_layers
from tfbench.plumbing.errors import UserError
from tfbench.reporting.tables import markdown_table
from tfbench.training.mixed_precision import VGG_PHOTOS, photo_batch
from tfbench.training.sparsity import (
    PRUNABLE_TYPES,
    layer_kernels,
    magnitude_mask,
    prunable_layers,
    skipped_layers,
    sparsity_of,
)


@dataclass
class OneShotRow:
    """The model at one sparsity (0: the dense model) against the dense model."""

    sparsity: float
    relative_l2_change: float
    top1_unchanged: float | None  # None when the output is not one vector per example
    raw_bytes: int
    compressed_bytes: int
    median_ms: float
    p10_ms: float
    p90_ms: float


@dataclass
class OneShotResult:
    """Every sparsity's row, the achieved sparsity of each kernel, and what was not pruned."""

    model: str
    batch: str  # what the probe batch is
    rows: list[OneShotRow] = field(default_factory=list)
    layer_sparsity: dict[str, dict[str, float]] = field(default_factory=dict)  # kernel -> {"50%": achieved}
    skipped: list[str] = field(default_factory=list)
    prunable_weights: int = 0
    total_weights: int = 0


def parse_sparsities(text: str) -> list[float]:
    """``"0.5,0.75,0.9"`` -> ``[0.5, 0.75, 0.9]``, each in ``[0, 1)``, sorted, duplicates dropped."""
    try:
        values = sorted({float(p) for p in text.split(",") if p.strip()})
    except ValueError:
        values = []
    if not values or any(not 0.0 <= v < 1.0 for v in values):
        raise UserError(f"--sparsities must be fractions in [0, 1) separated by commas, like 0.5,0.75,0.9; "
                        f"got {text!r}")
    return values


def probe_batch(input_shape: Sequence[int], dtype: str, batch_size: int, seed: int = 0,
                layers: Sequence[Any] = ()) -> tuple[np.ndarray, str]:
    """The fixed batch the outputs are compared on, and a sentence saying what it is.

    A 3-channel image input of at least 32x32: scikit-image's bundled photos
    (:func:`~tfbench.training.mixed_precision.photo_batch`) resized to it and scaled to [-1, 1].
    Otherwise random uniform, seeded: floats in [0, 1), integers in [0, n) with ``n`` the smallest
    ``input_dim`` of the model's Embedding ``layers`` (else 10).
    """
    shape = tuple(int(d) for d in input_shape)
    floating = "float" in dtype
    if floating and len(shape) == 3 and shape[2] == 3 and min(shape[:2]) >= 32:
        x = photo_batch(batch_size, shape[0], shape[1]).astype(dtype)
        used = ", ".join(VGG_PHOTOS[:min(batch_size, len(VGG_PHOTOS))])
        return x, f"scikit-image's bundled photos ({used}) resized to {shape[0]}x{shape[1]}, scaled to [-1, 1]"
    rng = np.random.default_rng(seed)
    if floating:
        x = rng.uniform(0.0, 1.0, (batch_size, *shape)).astype(dtype)
        return x, f"random uniform [0, 1) {dtype}, shape {shape}, seed {seed}"
    vocab = min((int(layer.input_dim) for layer in layers if hasattr(layer, "input_dim")), default=10)
    x = rng.integers(0, vocab, (batch_size, *shape)).astype(dtype)
    return x, f"random uniform integers in [0, {vocab}) {dtype}, shape {shape}, seed {seed}"


def model_kernels(model: Any) -> list[tuple[str, Any]]:
    """``(label, variable)`` of every prunable kernel of a Keras model."""
    return [pair for layer in prunable_layers(model) for pair in layer_kernels(layer)]


def pruned_values(kernels: Sequence[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """Each kernel with its ``floor(sparsity * size)`` smallest-magnitude entries set to zero (per layer)."""
    return [(k * magnitude_mask(k, sparsity)).astype(k.dtype) for k in kernels]


@contextlib.contextmanager
def kernels_restored(variables: Sequence[Any]) -> Iterator[list[np.ndarray]]:
    """The variables' values copied on entry (yielded) and assigned back on exit, whatever happens inside."""
    saved = [np.array(v.numpy(), copy=True) for v in variables]
    try:
        yield saved
    finally:
        for v, value in zip(variables, saved):
            v.assign(value)


def compressed_size(arrays: Sequence[np.ndarray]) -> int:
    """Bytes of ``np.savez_compressed`` of the arrays (zlib: runs of zeros shrink, dense floats barely)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, *arrays)
    return buffer.getbuffer().nbytes


def relative_change(output: np.ndarray, dense: np.ndarray) -> float:
    """``||output - dense|| / ||dense||`` over the whole batch (0 when equal)."""
    diff = np.linalg.norm((output.astype(np.float64) - dense.astype(np.float64)).ravel())
    norm = np.linalg.norm(dense.astype(np.float64).ravel())
    return float(diff / norm) if norm else float(diff)


def top1_unchanged(output: np.ndarray, dense: np.ndarray) -> float | None:
    """Fraction of examples whose argmax is the dense model's; None unless the output is (batch, classes>1)."""
    if output.ndim != 2 or output.shape[1] < 2:
        return None
    return float(np.mean(np.argmax(output, axis=1) == np.argmax(dense, axis=1)))


def one_shot(model: Any, x: np.ndarray, sparsities: Sequence[float], *, name: str = "model", batch: str = "",
             warmup: int = 2, repeats: int = 10) -> OneShotResult:
    """Prune ``model``'s kernels to each sparsity in turn, compare with the dense model on ``x``, restore it.

    ``model`` is a Keras model; its kernels hold their own values again when this returns.
    """
    import tensorflow as tf

    from tfbench.timing import block, summarise

    named = model_kernels(model)
    if not named:
        raise UserError(f"{name}: no layer to prune; pruning takes the kernels of {', '.join(PRUNABLE_TYPES)} "
                        "layers, and the model has none")
    variables = [v for _, v in named]
    result = OneShotResult(name, batch, skipped=skipped_layers(model),
                           prunable_weights=sum(int(np.prod(v.shape)) for v in variables),
                           total_weights=sum(int(np.prod(w.shape)) for w in model.weights))
    forward = tf.function(lambda inputs: model(inputs, training=False), autograph=False)
    levels = [0.0, *[s for s in sparsities if s > 0.0]]
    with kernels_restored(variables) as dense_kernels:
        states = {s: pruned_values(dense_kernels, s) if s else dense_kernels for s in levels}
        others = [np.asarray(w.numpy()) for w in model.weights if all(w is not v for v in variables)]
        outputs: dict[float, np.ndarray] = {}
        samples: dict[float, list[float]] = {s: [] for s in levels}
        for s in levels:  # outputs, and the warm-up calls
            _assign(variables, states[s])
            flat = [np.asarray(t) for t in tf.nest.flatten(block(forward(x)))]  # several outputs: side by side
            outputs[s] = flat[0] if len(flat) == 1 else np.concatenate([a.reshape(len(a), -1) for a in flat], 1)
            for _ in range(warmup):
                block(forward(x))
            result.layer_sparsity.update({label: {**result.layer_sparsity.get(label, {}), f"{s:.0%}": sparsity_of(k)}
                                          for (label, _), k in zip(named, states[s])})
        for r in range(repeats):  # round robin: a burst of load hits every sparsity alike; each round starts
            for s in levels[r % len(levels):] + levels[:r % len(levels)]:  # one further on, so none is always first
                _assign(variables, states[s])
                samples[s].append(_time_ms(lambda: block(forward(x))))
    dense = outputs[0.0]
    for s in levels:
        timing = summarise(f"{s:.0%}", samples[s])
        arrays = [*states[s], *others]
        top1 = top1_unchanged(outputs[s], dense) if len(flat) == 1 else None
        result.rows.append(OneShotRow(s, relative_change(outputs[s], dense), top1,
                                      sum(a.nbytes for a in arrays), compressed_size(arrays),
                                      timing.median_ms, timing.p10_ms, timing.p90_ms))
    return result


def prune_user_model(ref: str, sparsities: Sequence[float], *, input_shape: Sequence[int] | None = None,
                     allow_code: bool = False, batch_size: int = 16, seed: int = 0, warmup: int = 2,
                     repeats: int = 10) -> OneShotResult:
    """Load ``ref`` through :func:`tfbench.models.load.load`, build its probe batch, run :func:`one_shot`."""
    from tfbench.models import load

    loaded = load.load(ref, input_shape=input_shape, allow_code=allow_code, seed=seed)
    model = loaded.keras_model
    if model is None:
        raise UserError(f"{ref}: pruning needs Keras layers and this {loaded.source} has none (its weights are "
                        "anonymous variables of a graph); give the model as a .keras or .h5 file, or a factory")
    x, batch = probe_batch(loaded.input_shape, loaded.input_dtype, batch_size, seed, flat_layers(model))
    return one_shot(model, x, sparsities, name=loaded.name, batch=batch, warmup=warmup, repeats=repeats)


def write_tensorboard(result: OneShotResult, run_dir: Any) -> None:
    """Scalars against sparsity in percent (the step) and the table as a Text card, in ``run_dir``."""
    from tfbench.reporting import summaries

    dense = result.rows[0]
    for r in result.rows:
        scalars = {"relative_l2_change": r.relative_l2_change,
                   "compressed_vs_dense": r.compressed_bytes / dense.compressed_bytes,
                   "forward_ms": r.median_ms, "forward_vs_dense": r.median_ms / dense.median_ms}
        if r.top1_unchanged is not None:
            scalars["top1_unchanged"] = r.top1_unchanged
        summaries.write_scalars(run_dir, scalars, round(100 * r.sparsity))
    summaries.write_text(run_dir, {"one_shot_pruning": markdown(result)})


def _assign(variables: Sequence[Any], values: Sequence[np.ndarray]) -> None:
    for v, value in zip(variables, values):
        v.assign(value)


def _time_ms(fn: Any) -> float:
    import time

    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


# ----------------------------------------------------------------- results as text
def table_rows(result: OneShotResult) -> list[dict[str, Any]]:
    """One dict per sparsity, the columns the table and the Text card show."""
    dense = result.rows[0]
    return [{"sparsity": f"{r.sparsity:.0%}",
             "rel. L2 change": round(r.relative_l2_change, 4),
             "top-1 unchanged": "n/a" if r.top1_unchanged is None else f"{r.top1_unchanged:.0%}",
             "raw MB": round(r.raw_bytes / 1e6, 3),
             "compressed MB": round(r.compressed_bytes / 1e6, 3),
             "compressed vs dense": f"{r.compressed_bytes / dense.compressed_bytes:.0%}",
             "forward ms (median)": round(r.median_ms, 2),
             "vs dense": f"{r.median_ms / dense.median_ms:.2f}x"} for r in result.rows]


def layer_lines(result: OneShotResult) -> list[str]:
    """Per kernel: its achieved sparsity at each level; then what was not pruned."""
    lines = [f"{label}: " + ", ".join(f"{level} -> {value:.1%}" for level, value in levels.items() if level != "0%")
             for label, levels in result.layer_sparsity.items()]
    if result.skipped:
        lines.append(f"not pruned (weights of 2+ dimensions outside {', '.join(PRUNABLE_TYPES)}): "
                     + ", ".join(result.skipped))
    return lines


def markdown(result: OneShotResult) -> str:
    """The table and the per-kernel sparsity as Markdown, for TensorBoard's Text dashboard."""
    rows = table_rows(result)
    text = [f"**{result.model}**, one-shot magnitude pruning per layer; batch: {result.batch}", "",
            markdown_table(list(rows[0]), [list(row.values()) for row in rows])]
    text += ["", "Achieved sparsity per kernel:", ""] + [f"- {line}" for line in layer_lines(result)]
    return "\n".join(text)
