"""Mixed precision (exercise 5.9): float32, mixed_bfloat16 and mixed_float16 training of LeNet-5 and VGG19.

Keras policies, loss scaling for float16, the explicit-variable modules computing in a lower dtype,
and the timed cases ``python -m tfbench.mixed_precision`` and ``python -m tfbench.bench mixed_precision``
compare side by side.  :func:`time_model_policies` does the same for a user's own Keras model
(``--model``): its layers cloned under each policy, the forward pass and a training step timed,
the outputs compared with float32's.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from tfbench import models, timing
from tfbench.data import mnist
from tfbench.plumbing.errors import UserError
from tfbench.reporting.tables import markdown_rows

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


def make_train_step(model, optimizer: keras.optimizers.Optimizer, *, jit_compile: bool = False):
    """The custom loop's step as a ``tf.function`` (XLA if ``jit_compile``): forward, scaled loss, gradients, apply."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
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


def photo_batch(batch_size: int, height: int, width: int) -> np.ndarray:
    """``batch_size`` of scikit-image's bundled photos (:data:`VGG_PHOTOS`, in turn) as RGB, resized to
    ``height`` x ``width`` and scaled to [-1, 1], float32."""
    import tensorflow as tf

    from tfbench.data.images import skimage_photo

    photos = []
    for i in range(batch_size):
        pixels = skimage_photo(VGG_PHOTOS[i % len(VGG_PHOTOS)])
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=-1)
        photos.append(tf.image.resize(pixels[..., :3].astype(np.float32), (height, width)).numpy())
    return (np.stack(photos) / 127.5 - 1.0).astype(np.float32)


def vgg_batch(batch_size: int, size: int, num_classes: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A batch of scikit-image's bundled photos resized to ``size``, scaled to [-1, 1], with fixed labels."""
    y = np.random.default_rng(seed).integers(0, num_classes, batch_size)
    return photo_batch(batch_size, size, size), y.astype(np.int64)


IMPLS = ("keras", "module")


#: training loops timed side by side: Keras' fit step and the custom tf.function step, each with and without XLA.
TRAIN_LOOPS = ("fit", "fit_xla", "function", "function_xla")


FORWARD_LOOPS = ("function", "function_xla")


MODULE_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


@dataclass(frozen=True)
class Config:
    """One model at one input size and batch: everything timed together, round robin."""

    model: str
    size: int
    batch: int
    forward: bool  # time the forward pass too (inference, tf.function and XLA)
    policies: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.model}@{self.size}/b{self.batch}"


def module_train_step(module, optimizer: keras.optimizers.Optimizer, *, jit_compile: bool = False):
    """The custom loop's step for a ``tf.Module`` (float32 logits): sparse cross-entropy, scaled loss, apply."""
    import tensorflow as tf

    variables = module.trainable_variables

    @tf.function(reduce_retracing=True, jit_compile=jit_compile)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = module(x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            scaled = optimizer.scale_loss(loss)
        optimizer.apply(tape.gradient(scaled, variables), variables)
        return loss

    return train_step


def keras_cases(config: Config, policy: str, x: Any, y: Any, *, seed: int = 0) -> dict[str, Any]:
    """One Keras model and optimizer under ``policy``; every loop (and forward) variant runs on them.

    ``fit`` and ``fit_xla`` are Keras' own train functions (what ``fit`` runs each step; made with
    ``jit_compile`` off and on), called through ``train_on_batch``; ``function`` and
    ``function_xla`` are :func:`make_train_step`.  Sharing one model keeps memory flat.
    """
    import tensorflow as tf
    model = build_model(config.model, policy, seed=seed, vgg_input=config.size)
    optimizer = make_optimizer(policy)
    compile_for_fit(model, optimizer)
    fit_functions = {}
    for loop, jit in (("fit", False), ("fit_xla", True)):
        model.jit_compile = jit
        model.make_train_function(force=True)  # sets model.train_function (returns None on TensorFlow)
        fit_functions[loop] = model.train_function
        if fit_functions[loop] is None:
            raise RuntimeError("Keras did not make a train function")

    def fit_step(fn):
        def call():
            model.train_function = fn
            return model.train_on_batch(x, y, return_dict=True)["loss"]
        return call

    cases: dict[str, Any] = {loop: fit_step(fn) for loop, fn in fit_functions.items()}
    for loop, jit in (("function", False), ("function_xla", True)):
        step = make_train_step(model, optimizer, jit_compile=jit)
        cases[loop] = lambda step=step: step(x, y)
    out = {("train", loop): fn for loop, fn in cases.items()}
    if config.forward:
        for loop, jit in (("function", False), ("function_xla", True)):
            fwd = tf.function(lambda images: model(images, training=False), jit_compile=jit)
            out[("forward", loop)] = lambda fwd=fwd: fwd(x)
    return {"model": model, "cases": out}


def module_cases(config: Config, policy: str, x: Any, y: Any, *, seed: int = 0) -> dict[str, Any]:
    """The explicit-variable model with the policy's compute dtype; custom loop (and forward), with and without XLA."""
    import tensorflow as tf

    from tfbench.models import registry

    module = registry.get(config.model, impl="module", input_size=config.size, seed=seed,
                          compute_dtype=MODULE_DTYPE[policy],
                          **({"activation": "relu"} if config.model == "lenet5" else {}))
    optimizer = make_optimizer(policy)
    out: dict[tuple[str, str], Any] = {}
    for loop, jit in (("function", False), ("function_xla", True)):
        step = module_train_step(module, optimizer, jit_compile=jit)
        out[("train", loop)] = lambda step=step: step(x, y)
        if config.forward:
            fwd = tf.function(module.__call__, jit_compile=jit)
            out[("forward", loop)] = lambda fwd=fwd: fwd(x)
    return {"model": module, "cases": out}


def time_config(config: Config, x: np.ndarray, y: np.ndarray, *, impls: Sequence[str], loops: Sequence[str],
                warmup: int, repeats: int, xla: bool = True, seed: int = 0) -> list[timing.Timing]:
    """Every (impl, policy, kind, loop) case of one model/size/batch, timed round robin in the same rounds.

    Policies, loops, XLA variants, Keras model and Module all alternate call by call
    (:func:`tfbench.timing.compare`), so a change of load from other processes hits every case
    alike and shows up as spread (p10/p90), not as a difference between cases.
    """
    import tensorflow as tf
    xt, yt = tf.constant(x), tf.constant(y)
    wanted = set(loops) | ({f"{loop}_xla" for loop in loops} if xla else set())
    cases: dict[str, Any] = {}
    meta: dict[str, dict[str, Any]] = {}
    models: dict[str, Any] = {}
    for impl in impls:
        for policy in config.policies:
            built = (keras_cases if impl == "keras" else module_cases)(config, policy, xt, yt, seed=seed)
            for (kind, loop), fn in built["cases"].items():
                if loop not in wanted:
                    continue
                name = f"{config.label}/{kind}/{impl}/{policy}/{loop}"
                cases[name] = fn
                meta[name] = {"model": config.model, "size": config.size, "batch": config.batch, "kind": kind,
                              "impl": impl, "policy": policy, "loop": loop}
                models[name] = built["model"]
    timings = timing.compare(cases, warmup=warmup, repeats=repeats)
    for result in timings:
        result.extra.update(meta[result.case])
        result.extra["examples_per_s"] = config.batch / (result.median_ms / 1e3)
        model = models[result.case]
        if meta[result.case]["impl"] == "keras":
            result.extra.update(dtypes(model))
        else:
            result.extra.update({"variable_dtype": "float32", "compute_dtype": model.compute_dtype.name,
                                 "output_dtype": "float32"})
    return timings


def config_ratios(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Speed-ups from one run's rows: 16-bit vs float32, custom loop vs fit, XLA vs not, Module vs Keras."""
    by_key = {(r["model"], r["size"], r["batch"], r["kind"], r["impl"], r["policy"], r["loop"]): r["median_ms"]
              for r in rows}
    p10 = {(r["model"], r["size"], r["batch"], r["kind"], r["impl"], r["policy"], r["loop"]): r["p10_ms"]
           for r in rows}
    ratios: dict[str, float] = {}
    for (model, size, batch, kind, impl, policy, loop), ms in by_key.items():
        where = f"{model}@{size} b{batch} {kind} {impl} {loop}"
        base = by_key.get((model, size, batch, kind, impl, "float32", loop))
        if policy != "float32" and base:
            ratios[f"{where}: {policy} speed-up vs float32"] = base / ms
            # the fastest tenth of the rounds: what each case takes when the other jobs leave it alone
            key = (model, size, batch, kind, impl, policy, loop)
            ratios[f"{where}: {policy} speed-up vs float32 (p10)"] = \
                p10[(model, size, batch, kind, impl, "float32", loop)] / p10[key]
        tail = f"{model}@{size} b{batch} {kind} {impl} {policy}"
        if loop.startswith("function"):
            fit_key = (model, size, batch, kind, impl, policy, loop.replace("function", "fit"))
            if by_key.get(fit_key):
                ratios[f"{tail}: {loop} time / {loop.replace('function', 'fit')} time"] = ms / by_key[fit_key]
                ratios[f"{tail}: {loop} time / {loop.replace('function', 'fit')} time (p10)"] = \
                    p10[(model, size, batch, kind, impl, policy, loop)] / p10[fit_key]
        if loop.endswith("_xla"):
            plain = by_key.get((model, size, batch, kind, impl, policy, loop[:-4]))
            if plain:
                ratios[f"{tail}: {loop} speed-up vs {loop[:-4]}"] = plain / ms
        if impl == "module":
            keras_ms = by_key.get((model, size, batch, kind, "keras", policy, loop))
            if keras_ms:
                ratios[f"{model}@{size} b{batch} {kind} {policy} {loop}: module speed-up vs keras"] = keras_ms / ms
    return ratios


def goals(ratios: dict[str, float], bf16_expected: bool) -> list[str]:
    """The project's goals checked against this run: bf16 forward >= 1.8x and train >= 1.5x (VGG19 at 224,
    where the CPU has bf16 arithmetic), on medians and on p10s; the custom loop within 1.1x of fit under
    the same compilation."""
    lines = []
    for key, value in ratios.items():
        if "mixed_bfloat16 speed-up" in key and key.startswith("vgg19@224"):
            target = 1.8 if " forward " in key else 1.5
            verdict = ("met" if value >= target else "not met") if bf16_expected else "not expected on this CPU"
            lines.append(f"goal bf16 >= {target}x, {key}: {value:.2f}x ({verdict})")
        if " time / fit" in key:
            lines.append(f"goal custom loop <= 1.1x fit, {key}: {value:.2f}x ({'met' if value <= 1.1 else 'not met'})")
    return lines


# ---------------------------------------------------------------- the user's own model under each policy

@dataclass
class PolicyRun:
    """One policy on a user's model: median times, speed-ups over float32, and the forward output against float32's."""

    policy: str
    forward_ms: float
    train_ms: float
    forward_speedup: float  # float32's median / this median
    train_speedup: float
    max_abs_diff: float  # max |output - float32 output|, the forward pass on the same batch and weights
    variable_dtype: str
    compute_dtype: str
    output_dtype: str
    optimizer: str


@dataclass
class ModelPolicies:
    """A user's Keras model timed under each policy, round robin: the runs, the raw timings, the clones."""

    name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    batch: int
    output_scale: float  # max |float32 output|: the size the differences are read against
    runs: list[PolicyRun]
    timings: list[timing.Timing]
    models: dict[str, Any] = field(default_factory=dict, repr=False)  # policy -> the cloned Keras model
    optimizers: dict[str, Any] = field(default_factory=dict, repr=False)  # policy -> its optimizer

    @property
    def label(self) -> str:
        return f"{self.name} ({'x'.join(map(str, self.input_shape))}) b{self.batch}"

    def ratios(self) -> dict[str, float]:
        """Speed-ups over float32 of the forward pass and the training step, on medians and on p10s."""
        by_case = {(t.extra["kind"], t.extra["policy"]): t for t in self.timings}
        out: dict[str, float] = {}
        for (kind, policy), t in by_case.items():
            base = by_case[(kind, "float32")]
            if policy != "float32":
                out[f"{self.label} {kind}: {policy} speed-up vs float32"] = base.median_ms / t.median_ms
                out[f"{self.label} {kind}: {policy} speed-up vs float32 (p10)"] = base.p10_ms / t.p10_ms
        return out

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per policy, for the printed table and the TensorBoard card."""
        return [{"policy": r.policy, "forward_ms": r.forward_ms, "forward_x_float32": r.forward_speedup,
                 "train_ms": r.train_ms, "train_x_float32": r.train_speedup, "max_abs_diff": r.max_abs_diff,
                 "compute": r.compute_dtype, "variables": r.variable_dtype, "output": r.output_dtype,
                 "optimizer": r.optimizer} for r in self.runs]

    def markdown(self) -> str:
        """The per-policy table as markdown (TensorBoard's Text dashboard)."""
        return (f"**{self.label}**, input {self.input_dtype}, max abs float32 output {self.output_scale:.4g}\n\n"
                + markdown_rows(self.summary_rows()))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (the clones and optimizers left out)."""
        return {"name": self.name, "input_shape": list(self.input_shape), "input_dtype": self.input_dtype,
                "batch": self.batch, "output_scale": self.output_scale, "policies": [asdict(r) for r in self.runs]}


def random_input(shape: Sequence[int], dtype: str, batch: int, seed: int = 0) -> np.ndarray:
    """A seeded batch of ``shape``: standard normal for float inputs, 0s and 1s for integer ones (token ids)."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return rng.integers(0, 2, (batch, *shape)).astype(dtype)
    return rng.standard_normal((batch, *shape)).astype(np.float32).astype(dtype)


def mean_square_output(outputs: Any) -> Any:
    """The training loss on any model: the mean square of its (float32) outputs, summed over outputs."""
    import tensorflow as tf

    return tf.add_n([tf.reduce_mean(tf.square(tf.cast(o, tf.float32))) for o in tf.nest.flatten(outputs)])


def output_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer):
    """A ``tf.function`` training step needing no labels: :func:`mean_square_output`, scaled, applied."""
    import tensorflow as tf

    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = mean_square_output(model(x, training=True))
            scaled = optimizer.scale_loss(loss)  # times the dynamic scale for float16, unchanged otherwise
        optimizer.apply(tape.gradient(scaled, variables), variables)  # float32 gradients of the float32 masters
        return loss

    return train_step


def time_model_policies(model: keras.Model, *, name: str, input_shape: Sequence[int], input_dtype: str = "float32",
                        batch: int = 8, policies: Sequence[str] = POLICIES, warmup: int = 1, repeats: int = 5,
                        seed: int = 0) -> ModelPolicies:
    """A Keras model's layers cloned under each policy (float32 always, as the reference), same weights;
    forward pass and one Adam training step (:func:`make_optimizer`: loss-scaled for float16) on one
    seeded batch, timed round robin; each forward output compared with float32's.

    The clones keep float32 variables and compute in the policy's dtype; the layers giving the
    outputs stay float32 (:func:`tfbench.models.precision.clone_under_policy`).  The loss is
    :func:`mean_square_output`: float32, and needs no labels.
    """
    import keras
    import tensorflow as tf

    from tfbench.models.precision import clone_under_policy

    policies = ("float32", *[p for p in policies if p != "float32"])
    x = tf.constant(random_input(input_shape, input_dtype, batch, seed))
    cases: dict[str, Any] = {}
    outputs: dict[str, np.ndarray] = {}
    result = ModelPolicies(name, tuple(int(d) for d in input_shape), input_dtype, batch, 0.0, [], [])
    for policy in policies:
        keras.utils.set_random_seed(seed)
        twin = clone_under_policy(model, policy, float32_outputs=True)
        optimizer = make_optimizer(policy)
        forward = tf.function(lambda t, twin=twin: tf.nest.map_structure(
            lambda o: tf.cast(o, tf.float32), twin(t, training=False)))
        train_step = output_train_step(twin, optimizer)
        # the forward output before any training step changes the weights
        outputs[policy] = np.concatenate([np.asarray(timing.block(o), np.float64).ravel()
                                          for o in tf.nest.flatten(forward(x))])
        result.models[policy], result.optimizers[policy] = twin, optimizer
        dt = dtypes(twin)
        dt["output_dtype"] = str(tf.nest.flatten(twin.outputs)[0].dtype)
        cases[f"{name}/forward/{policy}"] = lambda forward=forward: forward(x)
        cases[f"{name}/train/{policy}"] = lambda step=train_step: step(x)
        result.runs.append(PolicyRun(policy, 0.0, 0.0, 1.0, 1.0, 0.0, optimizer=type(optimizer).__name__, **dt))
    reference = outputs["float32"]
    result.output_scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    result.timings = timing.compare(cases, warmup=max(warmup, 1), repeats=repeats)
    medians = {}
    for t in result.timings:
        _, kind, policy = t.case.rsplit("/", 2)
        medians[kind, policy] = t.median_ms
        t.extra.update({"model": name, "kind": kind, "policy": policy, "batch": batch,
                        "examples_per_s": batch / (t.median_ms / 1e3)})
    for run in result.runs:
        run.forward_ms, run.train_ms = medians["forward", run.policy], medians["train", run.policy]
        run.forward_speedup = medians["forward", "float32"] / run.forward_ms
        run.train_speedup = medians["train", "float32"] / run.train_ms
        run.max_abs_diff = float(np.max(np.abs(outputs[run.policy] - reference))) if reference.size else 0.0
    for t in result.timings:
        run = next(r for r in result.runs if r.policy == t.extra["policy"])
        forward = t.extra["kind"] == "forward"
        t.extra.update({"speedup_vs_float32": run.forward_speedup if forward else run.train_speedup,
                        "max_abs_diff": run.max_abs_diff if forward else None,
                        "variable_dtype": run.variable_dtype, "compute_dtype": run.compute_dtype,
                        "output_dtype": run.output_dtype})
    return result
