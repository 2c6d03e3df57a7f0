"""A Keras file's config, checked before Keras builds a single weight: no Python code, no memory bomb.

A ``.keras`` archive (a zip: ``config.json`` + ``model.weights.h5``) or a legacy ``.h5`` file
describes its model as JSON; Keras builds the layers from it and only then reads the weights.
Two things in that JSON can hurt whoever opens the file:

- Python code: a ``Lambda`` layer holding marshalled bytecode, or a function by name.  Keras'
  ``safe_mode=True`` refuses those; tfbench loads with it unless ``--allow-code`` and says so
  in its own words (the flag, not Keras' ``safe_mode`` argument the user never passed);
- sizes: ``Dense(units=10**6)`` on an input of ``10**6`` features declares 10^12 weights (4 TB of
  float32); Keras would try to allocate them before noticing anything.  :func:`declared_weights`
  builds the model *without allocating it* (Keras' ``StatelessScope`` with deferred variable
  initialisation gives every variable its shape and no value), sums what every layer declares,
  and :func:`check_config` refuses a model that needs more memory than this machine has, naming
  the largest layer and the size, as the batch-size guard does for activations.

Both run inside the child process of :mod:`tfbench.models.isolate` and again in the command's
own process, before ``keras.saving.load_model``.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfbench.plumbing.errors import UserError

MAX_CONFIG_BYTES = 64 << 20  # a config.json larger than this is not a model description
LAMBDA_HINTS = ("Lambda", "safe_mode", "unsafe_deserialization", "arbitrary code")


@dataclass(frozen=True)
class Declared:
    """What a config declares: weights in all, and its largest layer."""

    params: int
    bytes: int
    largest_layer: str
    largest_params: int


def read_config(path: Path, kind: str) -> dict[str, Any]:
    """The model config (parsed JSON) of a ``.keras`` archive or a legacy ``.h5`` file."""
    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > MAX_CONFIG_BYTES:
                    raise UserError(f"{path}: config.json is {info.file_size:,} bytes; a model config is far "
                                    f"smaller (limit {MAX_CONFIG_BYTES:,}): refused")
                text = archive.read(info).decode("utf-8")
        else:
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
                if raw is None:
                    raise UserError(f"{path}: an HDF5 file without a model config: weights only? expected a "
                                    "full model saved with model.save('x.h5')")
                text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        config = json.loads(text)
    except UserError:
        raise
    except (OSError, KeyError, ValueError, UnicodeDecodeError, RecursionError, zipfile.BadZipFile) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"{path}: cannot read the model config: {first}") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: the model config is not a JSON object")
    return config


_SAFE_MODE_REASON = re.compile(r"Requested the (?:deserialization|loading) of (.+?)\. This carries")


def code_refusal(path: Path | str, err: BaseException | None = None) -> str:
    """The line for a file that asks Keras for what its safe mode refuses: Python code, or a file outside it."""
    reason = _SAFE_MODE_REASON.search(str(err)) if err is not None else None
    if reason and "lambda" not in reason.group(1).lower():  # a vocabulary file outside the archive, say
        named = re.search(r"(Vocabulary file: '[^']*')", str(err))
        which = f" ({named.group(1)})" if named else ""
        return (f"{path}: the model asks for the loading of {reason.group(1)}{which}, "
                "which Keras' safe mode refuses (it could read any file or run code); refused. Pass --allow-code only "
                "if you trust this file")
    return (f"{path}: the model holds Python code (a Lambda layer or a function), which runs when it is loaded; "
            "refused. Pass --allow-code only if you trust this file")


def is_code_error(err: BaseException) -> bool:
    """Whether Keras refused the file for holding code (its safe mode)."""
    text = str(err)
    return "safe_mode" in text or "unsafe_deserialization" in text


def declared_weights(config: dict[str, Any], kind: str, allow_code: bool = False) -> Declared:
    """Build the model of ``config`` with deferred variables (no weight allocated) and sum what it declares."""
    import keras
    from keras.src.backend.common import global_state
    from keras.src.saving import serialization_lib

    with keras.StatelessScope(initialize_variables=False):
        try:
            with serialization_lib.SafeModeScope(not allow_code):
                if kind == "keras":
                    model = serialization_lib.deserialize_keras_object(config, safe_mode=not allow_code)
                else:
                    from keras.src.legacy.saving import saving_utils

                    model = saving_utils.model_from_config(config)
        finally:  # the variables were never given values: forget them (leaving the scope would initialise them)
            global_state.set_global_attribute("uninitialized_variables", [])
    largest, largest_params, total, total_bytes = "", 0, 0, 0
    layers = getattr(model, "layers", None) or [model]
    for layer in layers:
        params = 0
        for weight in getattr(layer, "weights", []):
            n = math.prod(int(d) for d in weight.shape)
            params += n
            total_bytes += n * _itemsize(getattr(weight, "dtype", "float32"))
        total += params
        if params > largest_params:
            largest, largest_params = f"{layer.name} ({type(layer).__name__})", params
    return Declared(total, total_bytes, largest, largest_params)


def _itemsize(dtype: Any) -> int:
    import numpy as np

    try:
        return np.dtype(str(dtype)).itemsize
    except TypeError:
        return 4


def check_config(path: Path, kind: str, allow_code: bool = False) -> Declared:
    """Refuse code without ``--allow-code`` and weights larger than the machine's memory, before building any."""
    from tfbench.models.isolate import machine_memory_bytes

    config = read_config(path, kind)
    try:
        declared = declared_weights(config, kind, allow_code)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a config it cannot build
        if is_code_error(err):
            raise UserError(code_refusal(path, err)) from None
        missing = re.search(r"Could not locate (?:class|function) '([^']+)'", str(err))
        if missing:  # the ordinary loader names the class and the cure
            return Declared(0, 0, "", 0)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(f"{path}: Keras cannot build the model its config describes: {type(err).__name__}: {first}"
                        ) from None
    memory = machine_memory_bytes()
    if declared.bytes > memory:
        raise UserError(f"{path}: the config declares {declared.params:,} weights ({declared.bytes / 2**30:,.1f} GiB), "
                        f"{declared.largest_params:,} of them in layer {declared.largest_layer}; more than this "
                        f"machine's {memory / 2**30:.1f} GiB of memory: refused before building any weight")
    return declared



def _layers(node: Any, found: list[dict[str, Any]]) -> None:
    """Every ``{"class_name": ..., "config": ...}`` object of a config, nested models included."""
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str) and isinstance(node.get("config"), dict):
            found.append(node)
        for value in node.values():
            _layers(value, found)
    elif isinstance(node, list):
        for value in node:
            _layers(value, found)


def config_report(path: Path) -> tuple[str, str | None]:
    """Every class named in a Keras file's config, with counts, code marked: (report, refusal or None).

    Read as JSON only: nothing is built.  A ``Lambda`` layer, or any object whose config holds a
    function, is code.
    """
    import collections

    from tfbench.reporting.tables import markdown_table

    kind = "h5" if path.suffix.lower() in (".h5", ".hdf5") else "keras"
    objects: list[dict[str, Any]] = []
    _layers(read_config(path, kind), objects)
    counts = collections.Counter(o["class_name"] for o in objects)
    code = sorted({o["class_name"] for o in objects if o["class_name"] == "Lambda" or "function" in o["config"]
                   or o["class_name"] == "__lambda__"})
    rows = [[name, n, "REFUSED: Python code" if name in code else "allowed"]
            for name, n in sorted(counts.items(), key=lambda kv: (kv[0] not in code, -kv[1], kv[0]))]
    head = (f"scan of {path}: {sum(counts.values())} objects in the config, {len(counts)} classes; "
            + (f"Python code in {', '.join(code)}" if code else "no Python code"))
    return head + "\n\n" + markdown_table(["class", "count", "verdict"], rows), code_refusal(path) if code else None
