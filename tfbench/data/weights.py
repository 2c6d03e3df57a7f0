"""VGG19 weight files in the formats people actually have, each opened exactly once (exercise 4.4).

The course's ``build_vggnet`` re-read the weight file for every layer.  Here :func:`load`
opens the file once, reads every layer into one dict ``{"conv1_1": (kernel, bias), ...}``,
checks every shape, and only then does anyone build a network from it.

Formats (chosen by file extension):

=========  ==========================================  ==========  ===========================
extension  what                                        input       needs
=========  ==========================================  ==========  ===========================
``.npz``   tfbench's own (:func:`save`), no pickle      declared    nothing
``.h5``    Keras (``vgg19_weights_tf_dim_ordering_tf_  BGR, caffe  h5py
           kernels.h5``, Keras 2 and 3 layouts)        mean
``.npy``   the widely shared ``vgg19.npy``: a pickled  BGR, caffe  ``allow_pickle=True``
           dict ``name -> [W, b]``                     mean        (runs code from the file!)
``.mat``   MatConvNet ``imagenet-vgg-verydeep-19.mat``  RGB, mean   scipy
                                                       from file
=========  ==========================================  ==========  ===========================

Each format declares what its network expects of the input as an
:class:`~tfbench.data.preprocess.InputSpec` (channel order, mean, std), so callers never guess.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from tfbench.data import labels
from tfbench.data.preprocess import CAFFE, InputSpec
from tfbench.models import vgg19
from tfbench.models.vgg19 import WeightDict
from tfbench.plumbing.errors import UserError
from tfbench.plumbing.files import atomic_output

try:
    from scipy.io.matlab import MatReadError as _MatReadError
except ImportError:  # pragma: no cover - scipy is a dependency
    _MatReadError = ValueError

FORMATS = {".npz": "tfbench npz", ".h5": "Keras HDF5", ".hdf5": "Keras HDF5",
           ".npy": "vgg19.npy (pickle)", ".mat": "MatConvNet"}


@dataclass
class VGGWeights:
    """Every layer's weights, what the network expects of its input, and where they came from."""

    layers: WeightDict
    input_spec: InputSpec
    source: str

    @property
    def is_random(self) -> bool:
        """True for the seeded random initialisation (no file)."""
        return self.source.startswith("random")


def random(seed: int = 0, *, include_top: bool = True) -> VGGWeights:
    """Seeded random VGG19 weights (only the convolutions without the top), declared with Keras' caffe preprocessing."""
    return VGGWeights(vgg19.random_weights(seed, include_top=include_top), CAFFE, f"random (seed {seed})")


def load(path: str | Path, *, allow_pickle: bool = False, num_classes: int = vgg19.NUM_CLASSES,
         input_size: int = vgg19.INPUT_SIZE, include_top: bool = True) -> VGGWeights:
    """Open ``path`` once, read every VGG19 layer, check all shapes; raise UserError on any problem.

    ``num_classes`` and ``input_size`` say which VGG19 the shapes are checked against
    (fc6's kernel is ``(input_size/32)^2 * 512`` rows; fc8 has ``num_classes`` columns).
    ``include_top=False`` needs and returns only the 16 convolutions (so no-top files load too).
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise UserError(f"{path}: unknown weight file type {path.suffix!r}; expected one of {sorted(FORMATS)}")
    try:
        handle = open(path, "rb")  # the one and only open of the file
    except OSError as err:
        raise UserError(f"cannot open weight file {path}: {err.strerror}") from err
    expected = expected_shapes(num_classes, input_size)
    with handle:
        try:
            layers, spec = reader(handle, allow_pickle=allow_pickle, expected=expected)
        except UserError as err:
            raise UserError(f"{path}: {err}") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, _MatReadError) as err:
            raise UserError(f"{path}: not a readable {FORMATS[path.suffix.lower()]} weight file ({err})") from err
    specs = vgg19.layer_specs(num_classes, input_size, include_top=include_top)
    try:
        vgg19.check_weights(layers, specs, source=str(path))
    except ValueError as err:
        hint = " (a no-top file has no fc layers)" if include_top and "layer fc" in str(err) else ""
        raise UserError(f"{err}{hint}") from None
    if not include_top:
        layers = {s.name: layers[s.name] for s in specs}
    return VGGWeights(layers, spec, f"{path} ({FORMATS[path.suffix.lower()]})")


def save(path: str | Path, weights: WeightDict, input_spec: InputSpec = CAFFE) -> Path:
    """Write weights in tfbench's ``.npz`` format (plain arrays plus a JSON header; no pickle), atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise UserError(f"{path}: tfbench saves weights as .npz")
    arrays: dict[str, np.ndarray] = {}
    for name, (kernel, bias) in weights.items():
        arrays[f"{name}/kernel"] = np.asarray(kernel, np.float32)
        arrays[f"{name}/bias"] = np.asarray(bias, np.float32)
    meta = {"format": "tfbench-vgg19", "version": 1, "channel_order": input_spec.channel_order,
            "mean": list(input_spec.mean), "std": list(input_spec.std), "size": input_spec.size}
    arrays["__meta__"] = np.array(json.dumps(meta))
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path


def expected_shapes(num_classes: int = vgg19.NUM_CLASSES, input_size: int = vgg19.INPUT_SIZE
                    ) -> dict[str, tuple[int, ...]]:
    """``{"conv1_1/kernel": (3, 3, 3, 64), "conv1_1/bias": (64,), ...}``: every array VGG19 needs, by shape."""
    shapes = {}
    for spec in vgg19.layer_specs(num_classes, input_size):
        shapes[f"{spec.name}/kernel"] = tuple(spec.kernel_shape)
        shapes[f"{spec.name}/bias"] = tuple(spec.bias_shape)
    return shapes


def _refuse_oversized(name: str, shape: tuple[int, ...], expected: dict[str, tuple[int, ...]]) -> None:
    """Before an array is read: its header must not claim more elements than the largest VGG19 array."""
    largest = max(int(np.prod(s)) for s in expected.values())
    if int(np.prod(shape, dtype=np.float64)) > largest:
        raise UserError(f"{name}: the file says shape {tuple(shape)}, more elements than any VGG19 array "
                        f"(the largest, fc6's kernel, has {largest:,}); not read")


# --- one reader per format: (open binary file) -> (weight dict, input spec) -------------------------

META_KEYS = {"channel_order": str, "mean": list, "std": list, "size": int}


def _npz_header(data: Any, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of one array of an open ``.npz``, from its header alone (the data is not read)."""
    fmt = np.lib.format
    with data.zip.open(f"{key}.npy") as member:
        version = fmt.read_magic(member)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read_header(member)
    return tuple(shape), dtype


def _read_npz(f: BinaryIO, allow_pickle: bool, expected: dict[str, tuple[int, ...]]
              ) -> tuple[WeightDict, InputSpec]:
    """tfbench's ``.npz``: every array's header is checked against VGG19's shapes before the array is read."""
    with np.load(f, allow_pickle=False) as data:
        if "__meta__" not in data.files:
            raise UserError("no __meta__ entry: not written by tfbench.data.weights.save")
        meta_shape, meta_dtype = _npz_header(data, "__meta__")
        if meta_shape != () or meta_dtype.kind != "U" or meta_dtype.itemsize > 1 << 16:
            raise UserError(f"__meta__ must be one JSON string, found {meta_dtype} of shape {meta_shape}")
        wanted = [key for key in expected if key in data.files]
        for key in wanted:
            shape, _ = _npz_header(data, key)
            if shape != expected[key]:
                name, _, part = key.partition("/")
                raise UserError(f"layer {name} {part} has shape {shape}, expected {expected[key]} "
                                "(from the array's header: not read)")
        meta_text = str(data["__meta__"])
        arrays = {key: data[key] for key in wanted}
    spec = _input_spec(meta_text)
    layers: WeightDict = {}
    for key in arrays:
        name, _, part = key.partition("/")
        if part == "kernel":
            if f"{name}/bias" not in arrays:
                raise UserError(f"layer {name} has a kernel but no bias")
            layers[name] = (arrays[key], arrays[f"{name}/bias"])
    return layers, spec


def _input_spec(meta_text: str) -> InputSpec:
    """The InputSpec of a ``__meta__`` JSON object, every key checked for presence and type."""
    try:
        meta = json.loads(meta_text)
    except ValueError as err:
        raise UserError(f"__meta__ is not JSON ({err})") from None
    if not isinstance(meta, dict):
        raise UserError(f"__meta__ must be a JSON object with keys {', '.join(META_KEYS)}, "
                        f"found a JSON {type(meta).__name__}")
    for key, kind in META_KEYS.items():
        if key not in meta:
            raise UserError(f"__meta__ has no {key!r} (it needs {', '.join(META_KEYS)})")
        if not isinstance(meta[key], kind) or (kind is list and (
                len(meta[key]) != 3 or not all(isinstance(v, (int, float)) for v in meta[key]))):
            wanted = "a list of 3 numbers" if kind is list else kind.__name__
            raise UserError(f"__meta__ {key!r} must be {wanted}, found {meta[key]!r}")
    try:
        return InputSpec(meta["channel_order"], tuple(meta["mean"]), tuple(meta["std"]), int(meta["size"]))
    except ValueError as err:
        raise UserError(f"__meta__: {err}") from None


def _read_keras_h5(f: BinaryIO, allow_pickle: bool, expected: dict[str, tuple[int, ...]]
                   ) -> tuple[WeightDict, InputSpec]:
    """Keras 2 ``save_weights``/applications layout (``layer_names`` attrs) or Keras 3 ``.weights.h5``.

    Each dataset's size is checked from its header before it is read.
    """
    import h5py

    def read(dataset: Any) -> np.ndarray:
        _refuse_oversized(dataset.name, tuple(dataset.shape), expected)
        return np.asarray(dataset)

    by_keras_name: dict[str, list[np.ndarray]] = {}
    with h5py.File(f, "r") as h5:
        if "layer_names" in h5.attrs:  # Keras 2: /<layer>/<weight name> listed in attrs
            root = h5["model_weights"] if "model_weights" in h5 else h5
            for layer in root.attrs["layer_names"]:
                layer = layer.decode() if isinstance(layer, bytes) else str(layer)
                group = root[layer]
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
                if names:
                    by_keras_name[layer] = [read(group[n]) for n in names]
        elif "layers" in h5:  # Keras 3: /layers/<layer>/vars/<i>
            for layer, group in h5["layers"].items():
                if "vars" in group and len(group["vars"]):
                    by_keras_name[layer] = [read(group["vars"][str(i)]) for i in range(len(group["vars"]))]
            by_keras_name = _keras3_positional_names(by_keras_name)
        else:
            raise UserError("neither a Keras 2 (layer_names) nor a Keras 3 (layers/) weight file")
    layers: WeightDict = {}
    for spec in vgg19.layer_specs():
        found = by_keras_name.get(spec.keras_name)
        if found is None and spec.kind == "conv":
            raise UserError(f"layer {spec.keras_name} ({spec.name}) is missing; found {sorted(by_keras_name)}")
        if found is not None:  # fc layers: load() says whether they are needed
            layers[spec.name] = (found[0], found[1])
    return layers, CAFFE


def _keras3_positional_names(found: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Keras 3 stores layers under class-based names (``conv2d``, ``conv2d_1``, ..., ``dense_2``) and
    matches them by position; map them to VGG19's layer names the same way."""
    specs = vgg19.layer_specs()
    if all(s.keras_name in found for s in specs):
        return found

    def in_order(prefix: str) -> list[str]:
        keys = [k for k in found if k == prefix or k.startswith(prefix + "_")]
        return sorted(keys, key=lambda k: int(k.rsplit("_", 1)[1]) if k != prefix else 0)

    renamed: dict[str, list[np.ndarray]] = {}
    for kind, prefix in (("conv", "conv2d"), ("fc", "dense")):
        names = [s.keras_name for s in specs if s.kind == kind]
        keys = in_order(prefix)
        if kind == "fc" and not keys:  # a no-top file
            continue
        if len(keys) != len(names):
            raise UserError(f"expected {len(names)} {prefix} layers in this Keras 3 file, found {len(keys)}: {keys}")
        renamed.update(zip(names, (found[k] for k in keys)))
    return renamed


def _read_vgg19_npy(f: BinaryIO, allow_pickle: bool, expected: dict[str, tuple[int, ...]]
                    ) -> tuple[WeightDict, InputSpec]:
    """The ``vgg19.npy`` of tensorflow-vgg: a pickled ``{name: [W, b]}``; convolution in BGR, caffe mean."""
    if not allow_pickle:
        raise UserError("this .npy file holds a pickled Python object, and unpickling runs code from the file; "
                        "pass --allow-pickle (allow_pickle=True) only if you trust where it came from")
    data = np.load(f, allow_pickle=True, encoding="latin1")
    mapping = data.item() if isinstance(data, np.ndarray) and data.dtype == object else data
    if not isinstance(mapping, dict):
        raise UserError(f"expected a pickled dict name -> [W, b], found {type(mapping).__name__}")
    return {name: (np.asarray(wb[0]), np.asarray(wb[1])) for name, wb in mapping.items()}, CAFFE


def _read_matconvnet(f: BinaryIO, allow_pickle: bool, expected: dict[str, tuple[int, ...]]
                     ) -> tuple[WeightDict, InputSpec]:
    """MatConvNet's ``imagenet-vgg-verydeep-19.mat``: structs read by field name, so any field order works."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(f, squeeze_me=True, struct_as_record=False)
    except Exception as err:  # noqa: BLE001 - scipy fails with IndexError, TypeError... on files that are no .mat
        raise UserError(f"not a MATLAB .mat file scipy can read ({type(err).__name__}: {err})") from None
    if "layers" not in mat:
        raise UserError("no 'layers' variable: not a MatConvNet SimpleNN model")
    layers: WeightDict = {}
    for layer in np.atleast_1d(mat["layers"]):
        name = str(_field(layer, "name"))
        if not name.startswith(("conv", "fc")):
            continue
        if hasattr(layer, "weights"):  # MatConvNet >= 1.0-beta: weights = {W, b}
            kernel, bias = layer.weights[0], layer.weights[1]
        else:  # older files: filters / biases
            kernel, bias = _field(layer, "filters"), _field(layer, "biases")
        kernel = np.asarray(kernel, np.float32)
        if name.startswith("fc"):  # stored as convolutions (7x7x512x4096, 1x1x4096x4096, ...)
            kernel = kernel.reshape(-1, kernel.shape[-1])
        layers[name] = (kernel, np.asarray(bias, np.float32).ravel())
    meta = mat.get("meta")
    normalization = getattr(meta, "normalization", None) if meta is not None else mat.get("normalization")
    mean = (123.68, 116.779, 103.939)
    if normalization is not None and hasattr(normalization, "averageImage"):
        average = np.asarray(normalization.averageImage, np.float64)
        mean = tuple(float(v) for v in average.reshape(-1, 3).mean(axis=0))
    classes = getattr(meta, "classes", None) if meta is not None else mat.get("classes")
    if classes is not None and "fc8" in layers and hasattr(classes, "name"):
        layers["fc8"] = _to_sorted_synset_order(layers["fc8"], [str(c) for c in np.atleast_1d(classes.name)])
    return layers, InputSpec("RGB", mean)  # type: ignore[arg-type]


def _field(struct: Any, name: str) -> Any:
    try:
        return getattr(struct, name)
    except AttributeError:
        fields = getattr(struct, "_fieldnames", [])
        raise UserError(f"struct has no field {name!r} (fields: {fields})") from None


def _to_sorted_synset_order(fc8: tuple[np.ndarray, np.ndarray], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Permute fc8's output columns from the file's class order to tfbench's (sorted synsets)."""
    ours = labels.synsets()
    if sorted(names) != sorted(ours) or names == ours:
        return fc8
    column = {synset: i for i, synset in enumerate(names)}
    order = [column[s] for s in ours]
    return fc8[0][:, order], fc8[1][order]


_READERS = {".npz": _read_npz, ".h5": _read_keras_h5, ".hdf5": _read_keras_h5,
            ".npy": _read_vgg19_npy, ".mat": _read_matconvnet}
