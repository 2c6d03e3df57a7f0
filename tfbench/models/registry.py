"""One way to build any model by name: ``models.get("vgg19", impl="module", input_size=64)``.

Every command that takes a model name builds it here, so the names, the size rules and the
error messages are the same everywhere (torchvision's ``models.get_model`` is the model for this).
Two implementations exist for the networks the course builds by hand:

- ``impl="keras"``: a Keras 3 functional model (every zoo model has one);
- ``impl="module"``: a ``tf.Module`` holding explicit ``tf.Variable``\\ s (VGG19, LeNet-5, the MLP).

Nothing here imports TensorFlow until a model is built, so listing names stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from tfbench.plumbing.errors import UserError

IMPLS = ("keras", "module")


@dataclass(frozen=True)
class SizeRule:
    """Which square input sizes a model accepts: a native size, a minimum, a divisor, or only the native size."""

    native: int
    minimum: int
    multiple: int = 1
    fixed: bool = False
    channels: int = 3
    why: str = ""  # said after the divisor, e.g. " (five 2x2 pools)"

    def describe(self) -> str:
        """The rule in words, for ``--help``: "divisible by 32, at least 32"."""
        if self.fixed:
            return f"only {self.native}"
        return (f"divisible by {self.multiple}, " if self.multiple > 1 else "") + f"at least {self.minimum}"

    def check(self, name: str, size: int) -> str | None:
        """None if ``size`` is accepted, else a sentence saying what is expected."""
        if self.fixed and size != self.native:
            return f"{name} only takes {self.native}x{self.native} inputs, got {size}"
        if size < self.minimum:
            return f"{name} needs an input of at least {self.minimum}x{self.minimum}, got {size}"
        if size % self.multiple:
            return f"{name} needs an input size divisible by {self.multiple}{self.why}, got {size}"
        return None


#: model name -> its input size rule (the zoo's published numbers live in :mod:`tfbench.models.zoo`).
SIZE_RULES: dict[str, SizeRule] = {
    "alexnet": SizeRule(224, 63),
    "alexnet_grouped": SizeRule(227, 67),
    "vgg19": SizeRule(224, 32, multiple=32, why=" (five 2x2 pools)"),
    "resnet18": SizeRule(224, 32),
    "resnet50": SizeRule(224, 32),
    "resnet152": SizeRule(224, 32),
    "inception_v1": SizeRule(224, 32),
    "inception_v1_bn": SizeRule(224, 32),
    "lenet5": SizeRule(32, 32, fixed=True, channels=1),
    "mlp": SizeRule(28, 28, fixed=True, channels=1),
}
NAMES: tuple[str, ...] = tuple(SIZE_RULES)
#: the models built by hand as explicit-variable ``tf.Module``\\ s too.
MODULE_NAMES: tuple[str, ...] = ("vgg19", "lenet5", "mlp")


def input_size_error(name: str, size: int) -> str | None:
    """None if model ``name`` accepts ``size``x``size`` inputs, else why not (for a UserError or argparse)."""
    return SIZE_RULES[name].check(name, size)


def check_name(name: str, choices: Sequence[str] = NAMES) -> None:
    """Raise UserError naming the choices when ``name`` is not one of them."""
    if name not in choices:
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(choices)}")


def get(name: str, *, impl: str = "keras", input_size: int | None = None, num_classes: int | None = None,
        seed: int = 0, activation: str | None = None, hidden: Sequence[int] | None = None,
        weights: Any = None, compute_dtype: str | None = None, include_top: bool = True) -> Any:
    """Build model ``name`` with seeded (or given) weights; every bad argument is a UserError.

    ``include_top=False`` (VGG19's ``tf.Module`` only) keeps the convolutions: a feature extractor.

    ``input_size`` defaults to the model's native size; ``num_classes`` to its own (1000 for
    ImageNet models, 10 for the digit models); ``activation`` and ``hidden`` apply to LeNet-5
    (tanh or relu) and the MLP (hidden widths, relu/tanh/sigmoid).  ``compute_dtype``
    ("float32", "bfloat16", "float16"; default float32) is mixed precision: float32 variables,
    16-bit arithmetic, float32 logits.  Modules take it directly; Keras models are built under
    the matching ``mixed_*`` dtype policy and end in a float32 ``linear`` layer named ``logits_float32``.
    """
    if compute_dtype is not None and compute_dtype != "float32":
        from tfbench.models.precision import COMPUTE_DTYPES

        if compute_dtype not in COMPUTE_DTYPES:
            raise UserError(f"compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {compute_dtype!r}")
        if impl == "keras":
            return _keras_mixed(name, compute_dtype, input_size=input_size, num_classes=num_classes, seed=seed,
                                activation=activation, hidden=hidden, weights=weights)
    if not include_top and (name, impl) != ("vgg19", "module"):
        raise UserError(f"include_top=False is built for vgg19 with impl='module' only, not {name} impl={impl!r}")
    return _build(name, impl=impl, input_size=input_size, num_classes=num_classes, seed=seed,
                  activation=activation, hidden=hidden, weights=weights, compute_dtype=compute_dtype or "float32",
                  include_top=include_top)


def _keras_mixed(name: str, compute_dtype: str, **kwargs: Any) -> Any:
    """A Keras model built under the ``mixed_<compute_dtype>`` policy, its logits cast to float32."""
    import keras

    from tfbench.models.precision import keras_policy

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(keras_policy(compute_dtype))
    try:
        base = _build(name, impl="keras", **kwargs)
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(base.output)
    finally:
        keras.config.set_dtype_policy(previous)
    return keras.Model(base.input, logits, name=base.name)


def _build(name: str, *, impl: str, input_size: int | None, num_classes: int | None, seed: int,
           activation: str | None, hidden: Sequence[int] | None, weights: Any, compute_dtype: str = "float32",
           include_top: bool = True) -> Any:
    check_name(name)
    if impl not in IMPLS:
        raise UserError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl == "module" and name not in MODULE_NAMES:
        raise UserError(f"{name} has no tf.Module implementation; those are {', '.join(MODULE_NAMES)}")
    size = SIZE_RULES[name].native if input_size is None else int(input_size)
    problem = input_size_error(name, size)
    if problem:
        raise UserError(problem)
    if name == "vgg19":
        from tfbench.models import vgg19

        classes = vgg19.NUM_CLASSES if num_classes is None else num_classes
        if impl == "module":
            return vgg19.VGG19Module(weights, seed=seed, num_classes=classes, input_size=size,
                                     compute_dtype=compute_dtype, include_top=include_top)
        return vgg19.build_keras_vgg19(weights, seed=seed, num_classes=classes, input_size=size)
    if name == "lenet5":
        from tfbench.models import lenet5

        activation = activation or "tanh"
        if activation not in lenet5.ACTIVATIONS:
            raise UserError(f"LeNet-5 activation must be one of {', '.join(lenet5.ACTIVATIONS)}, got {activation!r}")
        if impl == "module":
            return lenet5.LeNet5Module(weights, seed=seed, activation=activation, compute_dtype=compute_dtype)
        return lenet5.build_keras_lenet5(weights, seed=seed, activation=activation)
    if name == "mlp":
        from tfbench.models import mlp

        activation = activation or "relu"
        if activation not in mlp.ACTIVATIONS:
            raise UserError(f"MLP activation must be one of {', '.join(mlp.ACTIVATIONS)}, got {activation!r}")
        widths = tuple(hidden or mlp.DEFAULT_HIDDEN)
        if impl == "module":
            return mlp.MLPModule(widths, weights, seed=seed, activation=activation, compute_dtype=compute_dtype)
        return mlp.build_keras_mlp(widths, weights, seed=seed, activation=activation)
    from tfbench.models import zoo

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    return zoo.BUILDERS[name](input_size=size, seed=seed, **kwargs)
