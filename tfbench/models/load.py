"""One loader for every model a command can take: a registry name, a file, a SavedModel or a factory.

``load("resnet50")`` builds a zoo model through :mod:`tfbench.models.registry`, as before;
``load("my_model.keras")`` opens what the user brings:

- a Keras 3 ``.keras`` archive or a legacy ``.h5`` full model (``keras.saving.load_model``, no compile);
- a SavedModel folder: its ``serving_default`` signature, or its only signature (a ``tf.Module``
  exported with a ``tf.function(input_signature=...)`` has one);
- ``package.module:factory``, only with ``allow_code=True`` (the commands' ``--allow-code``), because
  it imports and runs the user's code.  The factory returns a Keras model, or a ``(callable,
  input_signature)`` pair, or a ``tf.Module``/``tf.function`` whose ``input_signature`` is set.

The result is a :class:`LoadedModel`: the model, a callable ``call(x)`` giving one output tensor,
and the input shape without the batch dimension, taken from the model, or from ``input_shape``
(the commands' ``--input-shape 224,224,3``) when the model leaves a dimension free.  Every bad
input is a :class:`tfbench.plumbing.errors.UserError` naming the file and what was expected.  A file is
untrusted until checked: a SavedModel's ops are scanned (:mod:`tfbench.models.scan`), a Keras
config is checked for code and for sizes (:mod:`tfbench.models.keras_check`), and the file is
loaded and run once in a child process (:mod:`tfbench.models.isolate`) before it is loaded here;
``allow_code`` (``--allow-code``) lets a file run its own code.  See docs/security.md.
Nothing here imports TensorFlow until a model is loaded.
"""

from __future__ import annotations

import importlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tfbench.plumbing.errors import UserError, first_line

FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
MAX_UNPACKED_BYTES = 64 << 30  # a .keras archive unpacking to more is refused before it is inflated


@dataclass
class LoadedModel:
    """A model ready for the instruments: what it is, how to call it, and its input shape (batch free)."""

    name: str  # a label for run folders and reports: the registry name or the file's stem
    source: str  # "registry", "keras", "h5", "savedmodel" or "factory"
    model: Any  # a keras.Model, or the loaded SavedModel / tf.Module / callable
    call: Callable[[Any], Any]  # x -> one output tensor (inference)
    input_shape: tuple[int, ...]  # without the batch dimension
    input_dtype: str = "float32"
    origin: str = ""  # the path or factory spec as given
    weights: tuple[list[Any], list[Any]] | None = None  # (trainable, other) when the model object does not list them

    @property
    def keras_model(self) -> Any | None:
        """The Keras model with built layers (for per-layer counts), or None for SavedModels and callables."""
        import keras

        return self.model if isinstance(self.model, keras.Model) else None

    def variables(self) -> tuple[list[Any], list[Any]]:
        """(trainable, non-trainable) variables of the model."""
        if self.keras_model is not None:
            return list(self.model.trainable_weights), list(self.model.non_trainable_weights)
        if self.weights is not None:
            return list(self.weights[0]), list(self.weights[1])
        trainable = list(getattr(self.model, "trainable_variables", []) or [])
        ids = {id(v) for v in trainable}
        other = [v for v in (getattr(self.model, "variables", []) or []) if id(v) not in ids]
        return trainable, other


def looks_like_factory(ref: str) -> bool:
    """``package.module:factory`` (and not a path that happens to hold a colon)."""
    return bool(FACTORY_RE.match(ref)) and not Path(ref).exists()


def is_registry_name(ref: str) -> bool:
    """Whether ``ref`` is one of the registry's model names."""
    from tfbench.models.registry import NAMES

    return ref in NAMES


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"224,224,3"`` or ``"224x224x3"`` -> ``(224, 224, 3)``: the input shape without the batch dimension."""
    parts = [p for p in re.split(r"[,x ]+", text.strip()) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise UserError(f"--input-shape must be positive whole numbers without the batch dimension, "
                        f"like 224,224,3; got {text!r}")
    return shape


def load(ref: str, *, input_shape: Sequence[int] | None = None, allow_code: bool = False,
         input_size: int | None = None, seed: int = 0, isolate: bool = True) -> LoadedModel:
    """Load ``ref`` (registry name, ``.keras``/``.h5`` file, SavedModel folder or ``module:factory``).

    A file or folder is checked first (its structure; a SavedModel's ops against the allowlist of
    :mod:`tfbench.models.scan`; a Keras config for code and for weights larger than the machine's
    memory, :mod:`tfbench.models.keras_check`), then, with ``isolate``, loaded, traced and run
    once in a child process (:mod:`tfbench.models.isolate`) before it is loaded here.
    """
    if is_registry_name(ref):
        from tfbench.models import registry

        if input_shape is not None:  # a zoo model is built at the size asked for, under its own size rule
            rule = registry.SIZE_RULES[ref]
            shape = tuple(int(d) for d in input_shape)
            if len(shape) != 3 or shape[0] != shape[1] or shape[2] != rule.channels:
                raise UserError(f"{ref} takes square {rule.channels}-channel images: --input-shape N,N,"
                                f"{rule.channels}, got {','.join(map(str, shape))}")
            input_size = shape[0]
        model = registry.get(ref, input_size=input_size, seed=seed)
        return _from_keras(model, ref, "registry", None, ref)
    if looks_like_factory(ref):
        return _from_factory(ref, input_shape, allow_code)
    path = Path(ref)
    if not path.exists():
        from tfbench.models.registry import NAMES

        raise UserError(f"{ref}: no such file or folder; expected a .keras or .h5 file, a SavedModel folder, "
                        f"package.module:factory (with --allow-code) or a model name ({', '.join(NAMES)})")
    kind = file_kind(path)
    check_before_loading(path, kind, allow_code)
    if isolate:
        from tfbench.models import isolate as isolation

        isolation.probe(ref, input_shape, allow_code)
    if kind == "h5":  # read by h5py's C code: after the child has survived it
        from tfbench.models import keras_check

        keras_check.check_config(path, kind, allow_code)
    if kind == "savedmodel":
        return _from_savedmodel(path, input_shape)
    return _from_keras(_load_keras_file(path, kind, allow_code), path.stem, kind, input_shape, ref)


def check_before_loading(path: Path, kind: str, allow_code: bool) -> None:
    """What is read as data only, before anything of the file is loaded: a SavedModel's ops against the
    allowlist (:mod:`.scan`), a ``.keras`` config for code and sizes (:mod:`.keras_check`)."""
    if kind == "savedmodel":
        from tfbench.models import scan

        scan.check_savedmodel(path, allow_code)
    elif kind == "keras":
        from tfbench.models import keras_check

        keras_check.check_config(path, kind, allow_code)


def file_kind(path: Path) -> str:
    """``"savedmodel"``, ``"h5"`` or ``"keras"`` after the structural checks (no TensorFlow); UserError otherwise."""
    if path.is_dir():
        if not (path / "saved_model.pb").exists() and not (path / "saved_model.pbtxt").exists():
            raise UserError(f"{path}: a folder but not a SavedModel (no saved_model.pb in it); expected a folder "
                            "written by tf.saved_model.save or model.export")
        return "savedmodel"
    if path.suffix.lower() in (".h5", ".hdf5"):
        _check_h5(path)
        return "h5"
    if path.suffix.lower() == ".keras" or zipfile.is_zipfile(path):
        _check_keras_archive(path)
        return "keras"
    raise UserError(f"{path}: not a model file; expected a Keras archive (.keras), a legacy Keras .h5 file "
                    "or a SavedModel folder")


# ---------------------------------------------------------------------------------------------- files


def _check_keras_archive(path: Path) -> None:
    """A ``.keras`` file is a zip with ``config.json`` in it; say which part is wrong before Keras does."""
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a Keras archive (a .keras file is a zip holding config.json and the weights)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > MAX_UNPACKED_BYTES:  # before testzip, which would inflate every member
                raise UserError(f"{path}: the archive unpacks to {unpacked:,} bytes, more than tfbench opens "
                                f"({MAX_UNPACKED_BYTES:,}): refused before inflating it")
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UserError(f"{path}: damaged Keras archive ({err}); save the model again") from err
    if broken is not None:
        raise UserError(f"{path}: damaged Keras archive ({broken} fails its checksum); save the model again")
    if "config.json" not in names:
        raise UserError(f"{path}: a zip file but not a Keras archive (no config.json in it)")


def _check_h5(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(8)
    if head != b"\x89HDF\r\n\x1a\n":
        raise UserError(f"{path}: not an HDF5 file; expected a legacy Keras .h5 full model (model.save('x.h5'))")


_MISSING_CLASS = re.compile(r"Could not locate (?:class|function) '([^']+)'")


def _load_keras_file(path: Path, kind: str, allow_code: bool = False) -> Any:
    import keras

    from tfbench.models import keras_check

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not allow_code)
    except (TypeError, ValueError, KeyError, OSError) as err:
        if keras_check.is_code_error(err):
            raise UserError(keras_check.code_refusal(path, err)) from None
        missing = _MISSING_CLASS.search(str(err))
        if missing:
            raise UserError(f"{path}: Keras cannot deserialize the custom class {missing.group(1)!r}; expected it "
                            "registered with @keras.saving.register_keras_serializable in a module that is "
                            "imported (load through package.module:factory with --allow-code)") from err
        first = first_line(err)
        raise UserError(f"{path}: Keras could not load this {kind} model: {first[:300]}") from err


def _from_keras(model: Any, name: str, source: str, input_shape: Sequence[int] | None, origin: str) -> LoadedModel:
    """A Keras model with one input, its shape fixed (from the model or ``input_shape``) and its layers built."""
    import keras

    inputs = getattr(model, "inputs", None)
    if not isinstance(model, keras.Model):
        raise UserError(f"{origin}: expected a Keras model, got {type(model).__name__}")
    if inputs is None:  # a Sequential model without an Input: build it at the given shape
        if input_shape is None:
            raise UserError(f"{origin}: the model does not say its input shape (a Sequential model without an Input, "
                            "or a subclassed keras.Model); pass --input-shape like 224,224,3")
        model.build((None, *input_shape))
        inputs = getattr(model, "inputs", None)
        if inputs is None:  # a subclassed keras.Model: no graph of layers; counted from its traced call
            return _subclassed(model, name, source, tuple(int(d) for d in input_shape), origin)
    if len(inputs) != 1:
        raise UserError(f"{origin}: the model has {len(inputs)} inputs; the instruments take models with one input")
    shape = tuple(inputs[0].shape[1:])
    dtype = str(getattr(inputs[0], "dtype", "float32"))
    if input_shape is not None:
        given = tuple(int(d) for d in input_shape)
        if len(given) != len(shape) or any(s is not None and s != g for s, g in zip(shape, given)):
            raise UserError(f"{origin}: --input-shape {','.join(map(str, given))} does not fit the model's input "
                            f"{_show(shape)}")
        if given != shape:
            model = _rebuild_at(model, given, origin)
        shape = given
    elif any(d is None for d in shape):
        raise UserError(f"{origin}: the model's input shape {_show(shape)} has free dimensions; pass --input-shape "
                        f"(without the batch dimension), like {','.join(str(d or 224) for d in shape)}")
    fixed = tuple(int(d) for d in shape)
    return LoadedModel(name, source, model, lambda x: model(x, training=False), fixed, dtype, origin)


def _subclassed(model: Any, name: str, source: str, shape: tuple[int, ...], origin: str) -> LoadedModel:
    """A subclassed model, called once symbolically at ``shape`` so its layers are built."""
    import keras

    try:
        model(keras.KerasTensor((None, *shape)))
    except Exception as err:  # noqa: BLE001 - a user's call may raise anything
        raise UserError(f"{origin}: the subclassed model {type(model).__name__} cannot be called on input shape "
                        f"{shape}: {first_line(err)}") from err
    return LoadedModel(name, source, model, lambda x: model(x, training=False), shape, "float32", origin)


def _rebuild_at(model: Any, shape: tuple[int, ...], origin: str) -> Any:
    """The same layers and weights on an input of ``shape``, so every layer has a static output shape."""
    import keras

    try:
        clone = keras.models.clone_model(model, input_tensors=keras.Input(shape, name=model.inputs[0].name,
                                                                              dtype=model.inputs[0].dtype))
        clone.set_weights(model.get_weights())
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a model it cannot rebuild
        raise UserError(f"{origin}: cannot rebuild the model at input shape {shape}: {first_line(err)}"
                        ) from err
    return clone


def _show(shape: Sequence[Any]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in ("batch", *shape)[1:]) + ")"


# ----------------------------------------------------------------------------------------- SavedModel


def _from_savedmodel(path: Path, input_shape: Sequence[int] | None) -> LoadedModel:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:  # noqa: BLE001 - TensorFlow raises many types for a damaged SavedModel
        raise UserError(f"{path}: TensorFlow could not load this SavedModel: {first_line(err, 300)}") from err
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if not signatures:
        raise UserError(f"{path}: the SavedModel has no signature; expected one, e.g. tf.saved_model.save(module, "
                        "path) with a tf.function(input_signature=...) __call__, or model.export(path)")
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    fn = signatures[key]
    args, kwargs = fn.structured_input_signature
    specs = list(args) + list(kwargs.values())
    if len(specs) != 1:
        raise UserError(f"{path}: signature {key!r} takes {len(specs)} inputs; the instruments take models with one")
    spec = specs[0]
    arg_name = next(iter(kwargs), None)

    def call(x: Any) -> Any:
        out = fn(**{arg_name: x}) if arg_name else fn(x)
        return next(iter(out.values())) if isinstance(out, dict) else out

    shape = _fixed_shape(tuple(spec.shape[1:]), input_shape, str(path))
    trainable = list(fn.trainable_variables)
    ids = {id(v) for v in trainable}
    weights = (trainable, [v for v in fn.variables if id(v) not in ids])
    return LoadedModel(path.name or "savedmodel", "savedmodel", loaded, call, shape, spec.dtype.name, str(path),
                       weights)


def _fixed_shape(shape: tuple[Any, ...], input_shape: Sequence[int] | None, origin: str) -> tuple[int, ...]:
    if input_shape is not None:
        given = tuple(int(d) for d in input_shape)
        if len(given) != len(shape) or any(s is not None and s != g for s, g in zip(shape, given)):
            raise UserError(f"{origin}: --input-shape {','.join(map(str, given))} does not fit the model's input "
                            f"{_show(shape)}")
        return given
    if any(d is None for d in shape):
        raise UserError(f"{origin}: the model's input shape {_show(shape)} has free dimensions; pass --input-shape "
                        f"(without the batch dimension), like {','.join(str(d or 224) for d in shape)}")
    return tuple(int(d) for d in shape)


# ------------------------------------------------------------------------------------------- factories


def _from_factory(ref: str, input_shape: Sequence[int] | None, allow_code: bool) -> LoadedModel:
    if not allow_code:
        raise UserError(f"{ref} names a Python factory; loading it imports and runs that code, so pass "
                        "--allow-code to allow it")
    module_name, attr = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - the user's module may raise anything while importing
        raise UserError(f"{ref}: importing {module_name} failed: {type(err).__name__}: {err}") from err
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"{ref}: module {module_name} has no callable {attr!r}")
    try:
        made = factory()
    except Exception as err:  # noqa: BLE001 - the user's factory may raise anything
        raise UserError(f"{ref}: the factory raised {type(err).__name__}: {err}") from err
    return from_object(made, input_shape=input_shape, name=attr, source="factory", origin=ref)


def from_object(obj: Any, *, input_shape: Sequence[int] | None = None, name: str | None = None,
                source: str = "object", origin: str | None = None) -> LoadedModel:
    """A model already in memory: a Keras model, a ``(callable, input_signature)`` pair, or a
    ``tf.Module``/``tf.function`` whose ``input_signature`` is set."""
    import keras

    origin = origin or name or type(obj).__name__
    if isinstance(obj, keras.Model):
        return _from_keras(obj, name or obj.name, "keras" if source == "object" else source, input_shape, origin)
    fn, signature = obj if isinstance(obj, tuple) and len(obj) == 2 else (obj, None)
    if signature is None:
        signature = getattr(fn, "input_signature", None) or getattr(getattr(fn, "__call__", None),
                                                                    "input_signature", None)
    if not callable(fn) or not signature:
        raise UserError(f"{origin}: expected a Keras model, a (callable, input_signature) pair or a "
                        f"tf.Module/tf.function with an input_signature; got {type(obj).__name__}")
    if isinstance(signature, (list, tuple)) and len(signature) != 1:
        raise UserError(f"{origin}: the input signature has {len(signature)} inputs; the instruments take one")
    spec = signature[0] if isinstance(signature, (list, tuple)) else signature

    def call(x: Any) -> Any:
        out = fn(x)
        return next(iter(out.values())) if isinstance(out, dict) else out

    shape = _fixed_shape(tuple(spec.shape[1:]), input_shape, origin)
    return LoadedModel(name or type(fn).__name__, source, fn, call, shape, spec.dtype.name, origin)


# ------------------------------------------------------------------------------------ the child process


def check_in_child(request: Any) -> str | None:
    """In the child of :mod:`tfbench.models.isolate`: load the file the ordinary way, trace and run it once.

    Returns the one-line error text, or None when the model loads and runs.
    """
    from tfbench.models.isolate import machine_memory_bytes

    try:
        loaded = load(request.ref, input_shape=request.input_shape, allow_code=request.allow_code, isolate=False)
        import tensorflow as tf

        spec = tf.TensorSpec((1, *loaded.input_shape), loaded.input_dtype)
        traced = tf.function(loaded.call).get_concrete_function(spec)
        traced(tf.zeros(spec.shape, spec.dtype))
    except UserError as err:
        return str(err)
    except MemoryError:
        return (f"{request.ref}: loading it needs more memory than this machine has "
                f"({machine_memory_bytes() / 2**30:.1f} GiB); refused")
    except Exception as err:  # noqa: BLE001 - a hostile file makes TensorFlow and Keras raise anything
        root: BaseException = err
        for _ in range(10):  # Keras and TensorFlow wrap the error that happened: say that one
            if (root.__cause__ or root.__context__) is None:
                break
            root = root.__cause__ or root.__context__  # type: ignore[assignment]
        lines = [line.strip() for line in str(root).splitlines() if line.strip()] or [""]
        named = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", line)]
        said = named[-1] if named else lines[0]  # "in user code: ... XError: ...": the error comes last
        return f"{request.ref}: the model fails to load or to run once: {type(root).__name__}: {said[:300]}"
    return None


def serve_child() -> None:
    """The child process's main: answer load requests with :func:`check_in_child` (see :mod:`.isolate`)."""
    from tfbench.models.isolate import serve

    serve(check_in_child)
