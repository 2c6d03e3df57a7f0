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
the custom loop, and reports final loss and test accuracy.  Then it times, round robin in the
same rounds, every combination of policy, implementation (the Keras model and the explicit-
variable ``tf.Module`` with the matching ``compute_dtype``), loop (``fit``'s train function and
the custom ``tf.function`` step, each also XLA-compiled) and, for VGG19, the forward pass:
LeNet-5 on a fixed random batch, VGG19 at a small input (``--image-size``, default 32) and at
224x224 batch 8 (``--vgg-large-input``), on scikit-image's bundled photos.  It prints the
machine header, a table and the ratios, and writes ``logs/bench/mixed_precision-<timestamp>.json``
(same as ``python -m tfbench.bench mixed_precision``) and per-epoch loss curves to
``logs/mixed_precision/<timestamp>/``.

``--model MODEL`` (a ``.keras``/``.h5`` file, a registry name, or ``package.module:factory`` with
``--allow-code``, through :mod:`tfbench.models.load`) times your own Keras model instead of LeNet-5
and VGG19 (``--models`` still adds them): its layers cloned under each policy with the same
weights, the output layers kept float32, the forward pass and one Adam step (the mean square of the
output as the loss; loss-scaled under float16) on a seeded random batch of ``--batch-size``, round
robin; the table gives each policy's medians, speed-up over float32 and max |output - float32 output|,
written to the same JSON and as a Text card in the run folder.  A SavedModel has no Keras layers to
clone and is refused in one line.

**Whether bfloat16 is faster depends on the CPU.**  The speed-up comes from hardware that
multiplies 16-bit numbers natively: NVIDIA tensor cores, or on x86 CPUs AVX512_BF16
(``vdpbf16ps``, Cooper Lake/Zen 4 and later) and AMX tiles (Sapphire Rapids and later), which
oneDNN uses for bf16 convolutions and matmuls.  TensorFlow turns oneDNN on by default only on
CPUs with such features (see :func:`tfbench.timing.onednn_state`).

- On AVX2-only CPUs (oneDNN off) TensorFlow converts bf16/fp16 to float32 around kernels or
  runs slower generic Eigen code: measured on a 2-core AVX2 EPYC, a VGG19 step at 32x32 ran
  at 0.31-0.37x float32's speed in ``mixed_bfloat16``, LeNet-5 at about 0.5x.  No speed-up
  is expected there, and the report says so.
- On AVX512_BF16 CPUs (oneDNN on) bfloat16 pays where the arithmetic dominates: VGG19 at
  224x224 batch 8 (see docs/precision.md for the measured ratios); tiny layers (LeNet-5, VGG19
  at 32x32) gain little, since casts and per-op overheads dominate.

The measured ratios are reported as they are, never tuned.  On every CPU the numerics hold:
float32 masters, float32 softmax, loss scaling, and bfloat16 training reaching float32's accuracy.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from tfbench import models, timing
from tfbench.data import mnist
from tfbench.models.registry import SIZE_RULES
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, first_line, run_cli
from tfbench.plumbing.files import write_json

if TYPE_CHECKING:  # for annotations; TensorFlow loads inside the functions that use it, after parsing
    pass
from tfbench.training.mixed_precision import (
    IMPLS,
    LOOPS,
    MODELS,
    POLICIES,
    Config,
    ModelPolicies,
    config_ratios,
    goals,
    time_config,
    time_model_policies,
    train_lenet5,
    vgg_batch,
)


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
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="comma-separated subset of " + ", ".join(POLICIES))
    parser.add_argument("--loops", default=",".join(LOOPS), help="fit, function (the custom tf.function loop)")
    parser.add_argument("--no-xla", action="store_true", help="skip the jit_compile variants of each loop")
    parser.add_argument("--impls", default=",".join(IMPLS),
                        help="keras (functional model, fit and custom loop), module (tf.Module, custom loop)")
    parser.add_argument("--model", default=None,
                        help=cli.MODEL_HELP + ": your Keras model timed under each policy (forward and an Adam "
                             "step on its own seeded input), its output compared with float32's")
    cli.add_model_source(parser)
    parser.add_argument("--models", default=None,
                        help="which models to time: lenet5, vgg19 (unset: both; neither with --model)")
    parser.add_argument("--epochs", type=cli.non_negative_int, default=None,
                        help="LeNet-5 accuracy run epochs (0 skips it; unset: 20, 0 with --model)")
    cli.add_batch_size(parser, 32, help="LeNet-5 batch size, and --model's")
    cli.add_image_size(parser, 32, model="vgg19", rule=SIZE_RULES["vgg19"])
    parser.add_argument("--no-small-vgg", action="store_true", help="skip VGG19 at --image-size (time only 224)")
    parser.add_argument("--vgg-batch", type=cli.positive_int, default=4, help="VGG19 batch size at --image-size")
    parser.add_argument("--vgg-large-input", type=cli.non_negative_int, default=224,
                        help="VGG19 full-size input, timed forward and train step (0 skips it)")
    parser.add_argument("--vgg-large-batch", type=cli.positive_int, default=8,
                        help="VGG19 batch size at the full-size input")
    parser.add_argument("--large-policies", default="float32,mixed_bfloat16",
                        help="policies timed at the full-size input (memory: one model and Adam state each)")
    parser.add_argument("--warmup", type=cli.non_negative_int, default=2, help="untimed steps before timing")
    cli.add_repeats(parser, 5, help="timed rounds per configuration")
    parser.add_argument("--large-repeats", type=cli.positive_int, default=3, help="timed rounds at the full-size input")
    cli.add_seed(parser)
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    ns = cli.parse(parser, argv)
    ns.vgg_input = 0 if ns.no_small_vgg else ns.image_size  # the small VGG19 timing input
    ns.policies = _csv(ns.policies, POLICIES, "--policies")
    ns.large_policies = _csv(ns.large_policies, POLICIES, "--large-policies")
    ns.loops = _csv(ns.loops, LOOPS, "--loops")
    ns.impls = _csv(ns.impls, IMPLS, "--impls")
    ns.models = _csv(ns.models, MODELS, "--models") if ns.models is not None else [] if ns.model else list(MODELS)
    if ns.epochs is None:
        ns.epochs = 0 if ns.model else 20
    if ns.vgg_large_input:
        problem = models.input_size_error("vgg19", ns.vgg_large_input)
        if problem:
            raise UserError(f"--vgg-large-input: {problem}")
    return ns


def configs(ns: argparse.Namespace) -> list[tuple[Config, int]]:
    """What to time, with the rounds for each: LeNet-5, VGG19 at the small input, VGG19 at full size."""
    out: list[tuple[Config, int]] = []
    if "lenet5" in ns.models:
        out.append((Config("lenet5", 32, ns.batch_size, False, tuple(ns.policies)), ns.repeats))
    if "vgg19" in ns.models:
        if ns.vgg_input:
            out.append((Config("vgg19", ns.vgg_input, ns.vgg_batch, True, tuple(ns.policies)), ns.repeats))
        if ns.vgg_large_input:
            out.append((Config("vgg19", ns.vgg_large_input, ns.vgg_large_batch, True, tuple(ns.large_policies)),
                        ns.large_repeats))
    return out


def time_user_model(ns: argparse.Namespace) -> ModelPolicies:
    """``--model``: load it (the one loader), refuse a model without Keras layers, time it under each policy."""
    from tfbench.models import load

    loaded = load.load(ns.model, input_shape=load.parse_input_shape(ns.input_shape) if ns.input_shape else None,
                       allow_code=ns.allow_code)
    if loaded.keras_model is None:
        raise UserError(f"{ns.model}: the mixed-precision policies need Keras layers to clone and this "
                        f"{loaded.source} has none; give a .keras/.h5 file, a registry name or a factory "
                        "returning a Keras model")
    policies = ("float32", *[p for p in ns.policies if p != "float32"])
    print(f"timing {loaded.name} (input {'x'.join(map(str, loaded.input_shape))} {loaded.input_dtype}, batch "
          f"{ns.batch_size}): forward and one Adam step under {', '.join(policies)}, round robin "
          f"({ns.repeats} rounds)", flush=True)
    try:
        return time_model_policies(loaded.keras_model, name=loaded.name, input_shape=loaded.input_shape,
                                   input_dtype=loaded.input_dtype, batch=ns.batch_size, policies=policies,
                                   warmup=ns.warmup, repeats=ns.repeats, seed=ns.seed)
    except (ValueError, TypeError) as err:  # what Keras raises for a model it cannot clone (a subclassed one)
        raise UserError(f"{ns.model}: its layers could not be cloned under a policy: {first_line(err, 200)}") from None


def run_benchmark(argv: Sequence[str] | None = None, prog: str = "bench mixed_precision") -> dict[str, Any]:
    """Accuracy runs of LeNet-5, step timings of LeNet-5/VGG19 and of ``--model`` under each policy; one report."""
    ns = parse_args(argv, prog)
    info = timing.print_header("mixed_precision")
    user = time_user_model(ns) if ns.model else None
    rows: list[dict[str, Any]] = []
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
                from tfbench.reporting import summaries

                for epoch, value in enumerate(result.loss_curve):
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
    for config, repeats in configs(ns):
        if config.model == "lenet5":
            x = mnist.pad_to_32(np.random.default_rng(ns.seed).random((config.batch, 28, 28, 1), np.float32))
            y = (np.arange(config.batch) % 10).astype(np.int64)
        else:
            x, y = vgg_batch(config.batch, config.size, seed=ns.seed)
        print(f"timing {config.label}: {', '.join(config.policies)} x {', '.join(ns.impls)} x loops, round robin "
              f"({repeats} rounds)", flush=True)
        warmup = ns.warmup if config.size < 224 else min(ns.warmup, 1)
        timings = time_config(config, x, y, impls=ns.impls, loops=ns.loops, warmup=max(warmup, 1), repeats=repeats,
                              xla=not ns.no_xla, seed=ns.seed)
        rows += [t.row() for t in timings]
    ratios = config_ratios(rows)
    for row in training:  # the accuracy runs join the timing rows they belong to
        for r in rows:
            if (r["model"] == "lenet5" and r["impl"] == "keras" and r["kind"] == "train"
                    and r["policy"] == row["policy"] and r["loop"] == row["loop"]):
                r["accuracy"], r["trained_loss"] = row["accuracy"], row["final_loss"]
    if user is not None:
        rows += [t.row() for t in user.timings]
        ratios.update(user.ratios())
    bf16_expected = not info["bf16_note"].startswith("no bfloat16")
    extra = {"training": training, "accuracy_delta_pp": accuracy_delta, "vgg_input": ns.vgg_input,
             "vgg_batch": ns.vgg_batch, "vgg_large_input": ns.vgg_large_input, "vgg_large_batch": ns.vgg_large_batch,
             "lenet5_batch": ns.batch_size, "run_dir": str(run_dir), "bf16_speedup_expected": bf16_expected,
             "note": info["bf16_note"], "goals": goals(ratios, bf16_expected)}
    if user is not None:
        extra["model"] = user.to_json()
    report = timing.report("mixed_precision", rows, ratios, logdir=ns.logdir, extra=extra)
    if user is not None:
        from tfbench.reporting import summaries

        print(f"{user.label}, each policy against float32 (max |float32 output| {user.output_scale:.4g}):")
        print(timing.format_table(user.summary_rows()))
        summaries.write_text(run_dir, {f"mixed_precision/{user.name}": user.markdown()})
    print(info["bf16_note"])
    for line in extra["goals"]:
        print(line)
    write_json(run_dir / "report.json", report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: the accuracy runs and the timings, printed and written as JSON."""
    run_benchmark(argv, prog="mixed_precision")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
