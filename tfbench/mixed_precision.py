"""Mixed-precision training: float32 vs ``mixed_bfloat16`` vs ``mixed_float16`` (course exercise 5.9).

What is kept in which precision, and why:

- **Variables (the master weights) stay float32.**  Under a ``mixed_*`` Keras policy each
  layer's *compute* dtype is 16-bit but its *variable* dtype is float32: the layer casts
  the weights to 16 bits on every call, and the optimizer updates the float32 masters.
  An update ``lr * grad`` is often below half a unit in the last place of a 16-bit weight
  (bfloat16 has 8 significant bits, float16 11), so updating 16-bit weights directly would
  round most updates away; float32 masters accumulate them.
- **The output softmax and the loss are float32**: the last layer here is
  ``Activation("softmax", dtype="float32")``, so the exponentials, the normalising sum and
  the cross-entropy's log see float32 range and precision.
- **float16 needs loss scaling, bfloat16 does not.**  float16 has 5 exponent bits: its
  smallest normal number is 6.1e-5 (subnormals go to 6e-8), so small gradients underflow to
  zero.  ``keras.optimizers.LossScaleOptimizer`` multiplies the loss by a large factor
  (``scale_loss``) so the backward pass's gradients are large enough, then divides them back
  in float32 before the update (``apply``); it halves the factor when a step overflows to
  inf/NaN (and skips that step) and doubles it after 2,000 good steps.  bfloat16 keeps
  float32's 8 exponent bits (same range, down to 1e-38), only fewer mantissa bits, so
  nothing underflows that would not in float32: no scaling.  ``model.fit`` and the custom
  ``tf.function`` loop below both use the same optimizer object; the loop calls
  ``optimizer.scale_loss(loss)`` and ``optimizer.apply(grads, variables)`` itself.

``python -m tfbench.mixed_precision`` trains LeNet-5 on the digits (MNIST if you have it,
else the 5,000 embedded MNIST digits) under the three policies with ``model.fit`` and with
the custom loop, and reports final loss and test accuracy; then it times training steps of
LeNet-5 (on a fixed random batch) and of the full-width VGG19 at a reduced input (``--image-size``, default 32x32, on
scikit-image's bundled photos) under each policy, timed round robin.  It prints a table and writes
``logs/bench/mixed_precision-<timestamp>.json`` (same as ``python -m tfbench.bench
mixed_precision``) and per-epoch loss curves to ``logs/mixed_precision/<timestamp>/``.

**On this machine bfloat16 is not faster.**  The speed-up mixed precision promises comes
from hardware that multiplies 16-bit numbers natively: NVIDIA tensor cores, or on x86 CPUs
AVX512-BF16 (``vdpbf16ps``, Cooper Lake and later) and AMX tiles (Sapphire Rapids and
later), which oneDNN uses for bf16 convolutions and matmuls (reported 4-5x faster than fp32
there, and half the memory traffic; we had no such machine to measure on).  An AVX2+FMA-only CPU (the AMD EPYC we measured on)
has none of that: TensorFlow either converts bf16/fp16 to float32 around every kernel or
runs slower generic Eigen code, so the 16-bit policies cost the same or more than float32.
Measured here (shared 2-core EPYC): a VGG19 step at 32x32 took 0.31-0.37x
float32's speed in ``mixed_bfloat16`` (about 3x slower, not 3x faster), LeNet-5 about 0.5x.
The measured ratios are reported as they are, never tuned.  What this machine *can* show
honestly is the numerics: float32 masters, float32 softmax, loss scaling, and that bfloat16
training reaches float32's accuracy.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from tfbench import bench, cli, models, paths
from tfbench.data import mnist
from tfbench.errors import UserError, run_cli
from tfbench.files import write_json

if TYPE_CHECKING:  # for annotations; TensorFlow loads inside the functions that use it, after parsing
    import keras

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
LOOPS = ("fit", "function")
MODELS = ("lenet5", "vgg19")
VGG_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field",
              "motorcycle_left", "cat")


@contextlib.contextmanager
def policy_scope(policy: str) -> Iterator[None]:
    """Set Keras' global dtype policy for layers built inside the block; restore the previous one after."""
    import keras

    if policy not in POLICIES:
        raise UserError(f"unknown precision policy {policy!r}; choose from {', '.join(POLICIES)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(name: str, policy: str, *, seed: int = 0, vgg_input: int = 32, num_classes: int = 1000):
    """LeNet-5 (ReLU variant) or VGG19 built under ``policy``, ending in a float32 softmax."""
    import keras

    models.registry.check_name(name, MODELS)
    keras.utils.set_random_seed(seed)
    with policy_scope(policy):
        if name == "lenet5":
            base = models.get("lenet5", seed=seed, activation="relu")
        else:  # the registry checks the input size (VGG19: a multiple of 32)
            base = models.get(name, seed=seed, num_classes=num_classes, input_size=vgg_input)
        probs = keras.layers.Activation("softmax", dtype="float32", name="probs")(base.output)
    return keras.Model(base.input, probs, name=f"{name}_{policy}")


def make_optimizer(policy: str, learning_rate: float = 1e-3) -> keras.optimizers.Optimizer:
    """Adam; wrapped in a dynamic ``LossScaleOptimizer`` for float16 (bfloat16 and float32 need none)."""
    import keras

    optimizer = keras.optimizers.Adam(learning_rate)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def make_train_step(model, optimizer: keras.optimizers.Optimizer):
    """The custom loop's step as a ``tf.function``: forward, scaled loss, gradients, unscale-and-apply."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            loss = loss_fn(y, probs)  # float32: the softmax layer is float32
            scaled = optimizer.scale_loss(loss)  # loss * dynamic scale for float16, unchanged otherwise
        grads = tape.gradient(scaled, variables)  # float32 grads of the float32 masters (still scaled)
        optimizer.apply(grads, variables)  # LossScaleOptimizer: unscale, skip if not finite, update scale
        return loss

    return train_step


def compile_for_fit(model, optimizer: keras.optimizers.Optimizer) -> None:
    """Compile with the same optimizer object the custom loop would use."""
    import keras

    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"],
                  jit_compile=False)


def loss_scale(optimizer: keras.optimizers.Optimizer) -> float | None:
    """The current dynamic loss scale (float16), or None."""
    import keras

    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return float(optimizer.dynamic_scale.numpy())
    return None


def dtypes(model) -> dict[str, str]:
    """Variable and compute dtypes of the first conv layer and of the output, to show what is kept where."""
    first = next(layer for layer in model.layers if layer.weights)
    return {"variable_dtype": first.variable_dtype, "compute_dtype": first.compute_dtype,
            "output_dtype": model.layers[-1].compute_dtype}


@dataclass
class TrainResult:
    """One training run: final loss and accuracy, time per example."""

    model: str
    policy: str
    loop: str
    epochs: int
    final_loss: float
    accuracy: float
    train_seconds: float
    examples_per_s: float
    loss_curve: list[float]
    loss_scale: float | None
    variable_dtype: str
    compute_dtype: str
    output_dtype: str


def train_lenet5(data: mnist.DigitData, policy: str, loop: str, *, epochs: int = 20, batch_size: int = 32,
                 seed: int = 0) -> TrainResult:
    """Train LeNet-5 under ``policy`` with ``fit`` or the custom loop; evaluate on the test split."""
    import keras

    if loop not in LOOPS:
        raise UserError(f"unknown loop {loop!r}; choose from {', '.join(LOOPS)}")
    x_train, x_test = mnist.pad_to_32(data.x_train), mnist.pad_to_32(data.x_test)
    model = build_model("lenet5", policy, seed=seed)
    optimizer = make_optimizer(policy)
    curve: list[float] = []
    start = time.perf_counter()
    if loop == "fit":
        compile_for_fit(model, optimizer)
        keras.utils.set_random_seed(seed)
        history = model.fit(x_train, data.y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
        curve = [float(v) for v in history.history["loss"]]
    else:
        step = make_train_step(model, optimizer)
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            order = rng.permutation(len(x_train))
            losses = [step(x_train[order[i:i + batch_size]], data.y_train[order[i:i + batch_size]])
                      for i in range(0, len(order), batch_size)]
            curve.append(float(np.mean([float(v) for v in losses])))
    seconds = time.perf_counter() - start
    probs = model.predict(x_test, batch_size=500, verbose=0)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == data.y_test))
    return TrainResult("lenet5", policy, loop, epochs, curve[-1], accuracy, seconds,
                       epochs * len(x_train) / seconds, curve, loss_scale(optimizer), **dtypes(model))


def vgg_batch(batch_size: int, size: int, num_classes: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A batch of scikit-image's bundled photos resized to ``size``, scaled to [-1, 1], with fixed labels."""
    import tensorflow as tf

    from tfbench.data.images import skimage_photo

    photos = []
    for i in range(batch_size):
        pixels = skimage_photo(VGG_PHOTOS[i % len(VGG_PHOTOS)])
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=-1)
        photos.append(tf.image.resize(pixels[..., :3].astype(np.float32), (size, size)).numpy())
    x = np.stack(photos) / 127.5 - 1.0
    y = np.random.default_rng(seed).integers(0, num_classes, batch_size)
    return x.astype(np.float32), y.astype(np.int64)


def step_function(model_name: str, policy: str, loop: str, x: np.ndarray, y: np.ndarray, *, seed: int = 0,
                  vgg_input: int = 32):
    """A fresh model under ``policy`` and a no-argument call running one training step with ``loop``."""
    model = build_model(model_name, policy, seed=seed, vgg_input=vgg_input)
    optimizer = make_optimizer(policy)
    if loop == "fit":
        compile_for_fit(model, optimizer)
        return model, lambda: model.train_on_batch(x, y, return_dict=True)["loss"]  # fit's train_function
    step = make_train_step(model, optimizer)
    return model, lambda: step(x, y)


def time_policies(model_name: str, loop: str, policies: Sequence[str], x: np.ndarray, y: np.ndarray, *,
                  warmup: int, repeats: int, seed: int = 0, vgg_input: int = 32) -> list[bench.Timing]:
    """Median step time of each policy, timed round robin (one step of each per round).

    Interleaving means a burst of load from other jobs on a shared machine hits every
    policy alike instead of whichever case happened to be running.
    """
    cases = {p: step_function(model_name, p, loop, x, y, seed=seed, vgg_input=vgg_input) for p in policies}
    for _ in range(warmup):  # traces, builds the optimizer, fills caches
        for _, fn in cases.values():
            bench.block(fn())
    samples: dict[str, list[float]] = {p: [] for p in policies}
    for _ in range(repeats):
        for policy, (_, fn) in cases.items():
            samples[policy].append(bench.measure(policy, fn, warmup=0, repeats=1).median_ms)
    timings = []
    for policy, (model, fn) in cases.items():
        ms = np.asarray(samples[policy])
        timing = bench.Timing(f"{model_name}/{policy}/{loop}", float(np.median(ms)), float(np.percentile(ms, 10)),
                              float(np.percentile(ms, 90)), repeats,
                              {"model": model_name, "policy": policy, "loop": loop, "batch": len(x)})
        timing.extra["examples_per_s"] = len(x) / (timing.median_ms / 1e3)
        timing.extra["timed_batch_loss"] = float(bench.block(fn()))  # after the timed steps
        timing.extra.update(dtypes(model))
        timings.append(timing)
    return timings


def _csv(value: str, allowed: Sequence[str], flag: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise UserError(f"{flag}: unknown value(s) {bad or value!r}; choose from {', '.join(allowed)}")
    return items


def parse_args(argv: Sequence[str] | None, prog: str = "mixed_precision") -> argparse.Namespace:
    """The flags shared by the CLI and ``python -m tfbench.bench mixed_precision`` (``prog`` says which)."""
    parser = cli.parser(prog, "float32 vs mixed_bfloat16 vs mixed_float16 training (ex. 5.9)")
    parser.add_argument("--data", help="MNIST IDX folder or mnist.npz (default: ~/.keras cache, else embedded MNIST)")
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated subset of " + ", ".join(POLICIES))
    parser.add_argument("--loops", default=",".join(LOOPS), help="fit, function (the custom tf.function loop)")
    parser.add_argument("--models", default=",".join(MODELS), help="which models to time: lenet5, vgg19")
    parser.add_argument("--epochs", type=cli.non_negative_int, default=20,
                        help="LeNet-5 accuracy run epochs (0 skips it)")
    cli.add_batch_size(parser, 32, help="LeNet-5 batch size")
    cli.add_image_size(parser, 32, model="vgg19")
    parser.add_argument("--vgg-batch", type=cli.positive_int, default=4, help="VGG19 batch size for timing")
    parser.add_argument("--warmup", type=cli.non_negative_int, default=2, help="untimed steps before timing")
    cli.add_repeats(parser, 5, help="timed steps per case")
    cli.add_seed(parser)
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    ns = parser.parse_args(argv)
    cli.quiet_tensorflow(ns.verbose)
    cli.check_output_dir(ns.logdir)
    ns.vgg_input = ns.image_size  # the VGG19 timing input
    ns.policies = _csv(ns.policies, POLICIES, "--policies")
    ns.loops = _csv(ns.loops, LOOPS, "--loops")
    ns.models = _csv(ns.models, MODELS, "--models")
    return ns


def run_benchmark(argv: Sequence[str] | None = None, prog: str = "bench mixed_precision") -> dict[str, Any]:
    """Accuracy runs of LeNet-5 and step timings of LeNet-5/VGG19 under each policy; one JSON report."""
    ns = parse_args(argv, prog)
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    accuracy_delta: dict[str, float] = {}
    training: list[dict[str, Any]] = []
    run_dir = paths.run_dir(ns.logdir, "mixed_precision")
    if ns.epochs:
        data = mnist.load(ns.data)
        print(data.summary())
        for loop in ns.loops:
            for policy in ns.policies:
                result = train_lenet5(data, policy, loop, epochs=ns.epochs, batch_size=ns.batch_size, seed=ns.seed)
                training.append(asdict(result))
                for epoch, value in enumerate(result.loss_curve):
                    from tfbench import summaries

                    summaries.write_scalars(run_dir / f"lenet5-{policy}-{loop}", {"loss": value}, epoch)
                print(f"lenet5 {loop:8s} {policy:15s} loss {result.final_loss:.4f} "
                      f"accuracy {result.accuracy:.2%} ({result.examples_per_s:.0f} examples/s)")
        for row in training:
            base = next((r for r in training if r["loop"] == row["loop"] and r["policy"] == "float32"), None)
            if base is not None and row["policy"] != "float32":
                accuracy_delta[f"lenet5 {row['loop']} {row['policy']} - float32"] = \
                    round(100 * (row["accuracy"] - base["accuracy"]), 2)
        for name, value in accuracy_delta.items():
            print(f"accuracy difference, percentage points: {name}: {value:+.2f}")
    x_lenet = mnist.pad_to_32(np.random.default_rng(ns.seed).random((ns.batch_size, 28, 28, 1), np.float32))
    y_lenet = np.arange(ns.batch_size) % 10
    for model_name in ns.models:
        x, y = (x_lenet, y_lenet) if model_name == "lenet5" else vgg_batch(ns.vgg_batch, ns.vgg_input, seed=ns.seed)
        for loop in ns.loops:
            rows += [t.row() for t in time_policies(model_name, loop, ns.policies, x, y, warmup=ns.warmup,
                                                    repeats=ns.repeats, seed=ns.seed, vgg_input=ns.vgg_input)]
            times = {r["policy"]: r["median_ms"] for r in rows if r["model"] == model_name and r["loop"] == loop}
            for policy in ns.policies:
                if policy != "float32" and "float32" in times:
                    ratios[f"{model_name} {loop} speed-up {policy} vs float32"] = times["float32"] / times[policy]
    for row in training:  # the accuracy runs join the timing rows they belong to
        for r in rows:
            if r["model"] == "lenet5" and r["policy"] == row["policy"] and r["loop"] == row["loop"]:
                r["accuracy"], r["trained_loss"] = row["accuracy"], row["final_loss"]
    extra = {"training": training, "accuracy_delta_pp": accuracy_delta, "vgg_input": ns.vgg_input, "vgg_batch": ns.vgg_batch,
             "lenet5_batch": ns.batch_size, "run_dir": str(run_dir),
             "note": "timings on a CPU without bf16/fp16 arithmetic (see tfbench.mixed_precision docstring)"}
    report = bench.report("mixed_precision", rows, ratios, logdir=ns.logdir, extra=extra)
    write_json(run_dir / "report.json", report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: the accuracy runs and the timings, printed and written as JSON."""
    run_benchmark(argv, prog="mixed_precision")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
