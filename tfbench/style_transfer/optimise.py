"""Style transfer's two procedures: optimise the pixels (Gatys) or train a transform net (Johnson).

Library code for ``python -m tfbench.style`` (exercise 3.9 and the course lab); the losses are in
:mod:`tfbench.models.style_losses`, the nets in :mod:`tfbench.models.vgg19` and
:mod:`tfbench.models.transform_net`.

- :func:`make_adam_step` is one optimisation step (losses, gradient w.r.t. the pixels, Adam, clip to
  ``[0, 1]``), run eagerly, as a ``tf.function`` or XLA-compiled (``mode``): the same Python code three ways;
- :func:`run_adam` and :func:`run_lbfgs` loop it (L-BFGS is SciPy's ``L-BFGS-B`` with the pixels bounded
  to ``[0, 1]``, driven by a ``tf.function`` that returns the loss and its gradient);
- :func:`compare_modes` runs the same steps in each mode from the same start, round robin, and reports
  their losses, their largest pixel difference and their times side by side;
- :func:`train_transform_net` trains the transform net on augmented photos with checkpoints, so it resumes;
- :func:`compare_norms` runs a trained net with its four instance norms and reports outputs and images/s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from tfbench.models import style_losses as sl
from tfbench.models import transform_net as tn

MODES = ("eager", "function", "xla")
METHODS = ("adam", "lbfgs")
Callback = Callable[[int, dict[str, float], tf.Tensor], None]


def square_image(pixels: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 ``HxWx3`` -> float32 ``(1, size, size, 3)`` in ``[0, 1]``: centre square, area-averaged resize."""
    h, w = pixels.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = tf.convert_to_tensor(pixels[top:top + side, left:left + side], tf.float32)[None] / 255.0
    return tf.image.resize(square, (size, size), method="area", antialias=True).numpy().clip(0.0, 1.0)


def to_uint8(image: Any) -> np.ndarray:
    """``(1, H, W, 3)`` or ``(H, W, 3)`` floats in ``[0, 1]`` -> uint8 ``HxWx3``."""
    array = np.asarray(image)
    array = array[0] if array.ndim == 4 else array
    return np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)


def floats(terms: dict[str, tf.Tensor]) -> dict[str, float]:
    """Loss terms as Python floats."""
    return {name: float(value) for name, value in terms.items()}


def make_value_and_grad(extractor: sl.FeatureExtractor, target: sl.Targets, weights: sl.LossWeights,
                        mode: str = "function") -> Callable[[tf.Tensor], tuple[dict[str, tf.Tensor], tf.Tensor]]:
    """``image -> (loss terms, d total / d image)``; ``mode`` eager, tf.function or XLA."""

    def value_and_grad(image: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(image)
            terms = sl.losses(extractor, image, target, weights)
        return terms, tape.gradient(terms["total"], image)

    return _in_mode(value_and_grad, mode)


def make_adam_step(extractor: sl.FeatureExtractor, target: sl.Targets, weights: sl.LossWeights,
                   optimizer: Any, image: tf.Variable, mode: str = "function") -> Callable[[], dict[str, tf.Tensor]]:
    """One Adam step on ``image`` (a ``tf.Variable`` in ``[0, 1]``); returns the terms before the update."""
    optimizer.build([image])

    def step() -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            terms = sl.losses(extractor, image, target, weights)
        grad = tape.gradient(terms["total"], image)
        optimizer.apply_gradients([(grad, image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return terms

    return _in_mode(step, mode)


def _in_mode(fn: Callable, mode: str) -> Callable:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return fn if mode == "eager" else tf.function(fn, jit_compile=mode == "xla")


def adam(learning_rate: float) -> Any:
    """Adam as TensorFlow's style-transfer tutorial sets it (beta_1 0.99, epsilon 0.1)."""
    import keras

    return keras.optimizers.Adam(learning_rate, beta_1=0.99, epsilon=0.1)


@dataclass
class Result:
    """The picture, the loss terms at every step, and the time of each step (ms)."""

    image: np.ndarray  # float32 (1, H, W, 3) in [0, 1]
    history: list[dict[str, float]] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)


def run_adam(extractor: sl.FeatureExtractor, target: sl.Targets, start: np.ndarray, *, steps: int,
             weights: sl.LossWeights = sl.LossWeights(), learning_rate: float = 0.05, mode: str = "function",
             callback: Callback | None = None) -> Result:
    """``steps`` Adam steps from ``start``; ``callback(step, terms, image)`` after each."""
    image = tf.Variable(start, dtype=tf.float32, name="picture")
    step = make_adam_step(extractor, target, weights, adam(learning_rate), image, mode)
    result = Result(start)
    for i in range(steps):
        begin = time.perf_counter()
        terms = floats(step())
        result.step_ms.append((time.perf_counter() - begin) * 1e3)
        result.history.append(terms)
        if callback:
            callback(i + 1, terms, image)
    result.image = image.numpy()
    return result


def run_lbfgs(extractor: sl.FeatureExtractor, target: sl.Targets, start: np.ndarray, *, steps: int,
              weights: sl.LossWeights = sl.LossWeights(), mode: str = "function",
              callback: Callback | None = None) -> Result:
    """SciPy's L-BFGS-B for ``steps`` iterations, pixels bounded to ``[0, 1]``; loss and gradient from TensorFlow."""
    from scipy.optimize import minimize

    value_and_grad = make_value_and_grad(extractor, target, weights, mode)
    shape = start.shape
    last: dict[str, Any] = {}
    result = Result(start)

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        terms, grad = value_and_grad(tf.constant(flat.reshape(shape), tf.float32))
        last["terms"] = floats(terms)
        return last["terms"]["total"], grad.numpy().astype(np.float64).ravel()

    clock = [time.perf_counter()]

    def on_iteration(xk: np.ndarray) -> None:
        now = time.perf_counter()
        result.step_ms.append((now - clock[0]) * 1e3)
        clock[0] = now
        result.history.append(last["terms"])
        if callback:
            callback(len(result.history), last["terms"], tf.constant(xk.reshape(shape), tf.float32))

    found = minimize(fun, start.astype(np.float64).ravel(), jac=True, method="L-BFGS-B",
                     bounds=[(0.0, 1.0)] * start.size, callback=on_iteration,
                     options={"maxiter": steps, "maxfun": steps * 3})
    result.image = found.x.reshape(shape).astype(np.float32)
    return result


def compare_modes(extractor: sl.FeatureExtractor, target: sl.Targets, start: np.ndarray, *, steps: int = 3,
                  weights: sl.LossWeights = sl.LossWeights(), learning_rate: float = 0.05,
                  modes: Sequence[str] = MODES) -> list[dict[str, Any]]:
    """The same Adam steps from ``start`` in each mode, round robin: first call (trace/compile), ms/step, losses.

    Each mode has its own picture and optimiser; after ``1 + steps`` steps the totals and pictures
    should agree up to float rounding (``max_abs_diff`` is against the first mode's picture).
    """
    images = {m: tf.Variable(start, dtype=tf.float32, name=f"picture_{m}") for m in modes}
    fns = {m: make_adam_step(extractor, target, weights, adam(learning_rate), images[m], m) for m in modes}
    first_s, samples, terms = {}, {m: [] for m in modes}, {}
    for m in modes:
        begin = time.perf_counter()
        terms[m] = floats(fns[m]())
        first_s[m] = time.perf_counter() - begin
    for _ in range(steps):
        for m in modes:
            begin = time.perf_counter()
            terms[m] = floats(fns[m]())
            samples[m].append((time.perf_counter() - begin) * 1e3)
    reference = images[modes[0]].numpy()
    rows = []
    for m in modes:
        rows.append({"mode": m, "first_call_s": first_s[m], "median_ms": float(np.median(samples[m])),
                     "min_ms": float(np.min(samples[m])), "max_ms": float(np.max(samples[m])),
                     **{f"{k}_loss": v for k, v in terms[m].items()},
                     "max_abs_diff": float(np.max(np.abs(images[m].numpy() - reference)))})
    return rows


# ----------------------------------------------------------------------------- the transform net (Johnson)


def augmented_batch(photos: Sequence[np.ndarray], size: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Random photos, each scaled so its shorter side is 1-1.5x ``size``, randomly cropped and flipped."""
    batch = []
    for _ in range(batch_size):
        pixels = photos[int(rng.integers(len(photos)))]
        h, w = pixels.shape[:2]
        scale = size * rng.uniform(1.0, 1.5) / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        image = tf.image.resize(tf.convert_to_tensor(pixels, tf.float32)[None] / 255.0, (nh, nw),
                                method="area", antialias=True)[0].numpy()
        top, left = int(rng.integers(nh - size + 1)), int(rng.integers(nw - size + 1))
        crop = image[top:top + size, left:left + size]
        batch.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return np.clip(np.stack(batch), 0.0, 1.0).astype(np.float32)


@dataclass
class Training:
    """What :func:`train_transform_net` did: steps run now, where it started, the loss terms of each step."""

    start_step: int
    steps_run: int
    history: list[dict[str, float]]
    step_ms: list[float]


def train_transform_net(net: Any, extractor: sl.FeatureExtractor, style_image: np.ndarray,
                        photos: Sequence[np.ndarray], *, steps: int, batch_size: int, size: int,
                        weights: sl.LossWeights, learning_rate: float = 1e-3, seed: int = 0,
                        checkpoint_dir: str | Path | None = None, checkpoint_every: int = 50,
                        callback: Callable[[int, dict[str, float]], None] | None = None) -> Training:
    """Train ``net`` (from :mod:`tfbench.models.transform_net`) for the perceptual loss until step ``steps``.

    The content target of each batch is its own photos' features; the style target the style
    image's Gram matrices.  With ``checkpoint_dir`` the net, the optimiser and the step count are
    saved every ``checkpoint_every`` steps and at the end, and a later call resumes from the latest
    checkpoint (batch ``i`` is drawn from seed ``(seed, i)``, so a resumed run sees the same batches).
    """
    import keras

    style = extractor(tf.constant(style_image))
    grams = {name: sl.gram_matrix(style[name]) for name in extractor.style_layers}
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(net.trainable_variables)
    step_var = tf.Variable(0, dtype=tf.int64, name="step")
    manager = None
    if checkpoint_dir is not None:
        checkpoint = tf.train.Checkpoint(net=net, optimizer=optimizer, step=step_var)
        manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_dir), max_to_keep=2)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()

    @tf.function
    def train_step(batch: tf.Tensor) -> dict[str, tf.Tensor]:
        content = tf.stop_gradient(extractor(batch)[extractor.content_layer])
        with tf.GradientTape() as tape:
            terms = sl.losses(extractor, net(batch, training=True), sl.Targets(content, grams), weights)
        variables = net.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(terms["total"], variables), variables))
        step_var.assign_add(1)
        return terms

    start = int(step_var.numpy())
    history, step_ms = [], []
    for i in range(start, steps):
        batch = augmented_batch(photos, size, batch_size, np.random.default_rng([seed, i]))
        begin = time.perf_counter()
        terms = floats(train_step(tf.constant(batch)))
        step_ms.append((time.perf_counter() - begin) * 1e3)
        history.append(terms)
        if callback:
            callback(i + 1, terms)
        if manager is not None and ((i + 1) % checkpoint_every == 0 or i + 1 == steps):
            manager.save(checkpoint_number=i + 1)
    return Training(start, max(0, steps - start), history, step_ms)


def stylise(net: Any, image: np.ndarray) -> np.ndarray:
    """Run a transform net on float ``(N, H, W, 3)`` pixels in ``[0, 1]`` (H and W cut to multiples of 4)."""
    h, w = image.shape[1] // 4 * 4, image.shape[2] // 4 * 4
    return np.asarray(net(tf.constant(image[:, :h, :w]), training=False))


def norm_functions(net: Any) -> dict[str, Any]:
    """The trained net as four ``tf.function``\\ s, one per instance norm (``tf``, ``cpp``, ``numpy``, ``fused``)."""
    return {norm: tf.function(lambda x, m=tn.with_norm(net, norm): m(x, training=False)) for norm in tn.NORMS}


def compare_norms(net: Any, images: np.ndarray, *, repeats: int = 5, warmup: int = 1) -> list[dict[str, Any]]:
    """Outputs and images/s of the net with each instance norm, timed round robin on the same images."""
    from tfbench import timing

    batch = tf.constant(images)
    fns = norm_functions(net)
    outputs = {norm: fn(batch).numpy() for norm, fn in fns.items()}
    timings = timing.compare({norm: (lambda f=fn: f(batch)) for norm, fn in fns.items()},
                            warmup=warmup, repeats=repeats)
    rows = []
    for result in timings:
        norm = result.case
        rows.append({"norm": norm, "instance_norm": {"tf": "TensorFlow ops (tf.pow)", "cpp": "PowerDifference C++ op",
                                                     "numpy": "NumPy via tf.numpy_function",
                                                     "fused": "fused InstanceNorm C++ op"}[norm],
                     "median_ms": result.median_ms, "p10_ms": result.p10_ms, "p90_ms": result.p90_ms,
                     "images_per_s": len(images) / (result.median_ms / 1e3),
                     "max_abs_diff_vs_tf": float(np.max(np.abs(outputs[norm] - outputs["tf"])))})
    return rows
