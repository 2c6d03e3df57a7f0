"""Weight files: every format loads to the same dict, in one open, and bad files fail clearly."""

from __future__ import annotations

import builtins

import h5py
import numpy as np
import pytest
import scipy.io

from tfbench.data import labels, weights
from tfbench.data.preprocess import CAFFE, InputSpec
from tfbench.models import vgg19
from tfbench.plumbing.errors import UserError

# A VGG19 for 32x32 inputs and 10 classes: every conv layer full size, small fc layers.
SMALL = {"num_classes": 10, "input_size": 32}


@pytest.fixture(scope="module")
def reference() -> vgg19.WeightDict:
    return vgg19.random_weights(seed=7, **SMALL)


def assert_same(loaded: vgg19.WeightDict, expected: vgg19.WeightDict) -> None:
    assert sorted(loaded) == sorted(expected)
    for name, (kernel, bias) in expected.items():
        np.testing.assert_array_equal(loaded[name][0], kernel, err_msg=name)
        np.testing.assert_array_equal(loaded[name][1], bias, err_msg=name)


def write_keras2_h5(path, w: vgg19.WeightDict) -> None:
    """The layout of keras' vgg19_weights_tf_dim_ordering_tf_kernels.h5 (Keras 2 applications)."""
    names = {s.name: s.keras_name for s in vgg19.layer_specs(**SMALL)}
    with h5py.File(path, "w") as h5:
        order = ["input_1"] + list(names.values())
        h5.attrs["layer_names"] = [n.encode() for n in order]
        h5.create_group("input_1").attrs["weight_names"] = []
        for name, keras_name in names.items():
            group = h5.create_group(keras_name)
            weight_names = [f"{keras_name}_W_1:0", f"{keras_name}_b_1:0"]
            group.attrs["weight_names"] = [n.encode() for n in weight_names]
            group[weight_names[0]] = w[name][0]
            group[weight_names[1]] = w[name][1]


def matconvnet_layers(w: vgg19.WeightDict, new_field_order: bool) -> np.ndarray:
    """A MatConvNet SimpleNN 'layers' cell array; fc layers stored as convolutions, relu/pool between."""
    cells = []
    for spec in vgg19.layer_specs(**SMALL):
        kernel, bias = w[spec.name]
        if spec.name == "fc6":
            kernel = kernel.reshape(1, 1, 512, -1)  # 32x32 input: pool5 is 1x1x512
        elif spec.kind == "fc":
            kernel = kernel.reshape(1, 1, *kernel.shape)
        weight_cell = np.empty(2, dtype=object)
        weight_cell[0], weight_cell[1] = kernel, bias.reshape(1, -1)
        if new_field_order:
            cells.append({"name": spec.name, "type": "conv", "weights": weight_cell, "pad": 1, "stride": 1})
        else:
            cells.append({"weights": weight_cell, "stride": 1, "pad": 1, "type": "conv", "name": spec.name})
        cells.append({"name": f"relu_{spec.name}", "type": "relu"})
    array = np.empty(len(cells), dtype=object)
    for i, cell in enumerate(cells):
        array[i] = cell
    return array


def test_npz_round_trip_keeps_weights_and_input_spec(tmp_path, reference):
    spec = InputSpec("RGB", (1.0, 2.0, 3.0), (4.0, 5.0, 6.0), 32)
    path = weights.save(tmp_path / "vgg.npz", reference, spec)
    loaded = weights.load(path, **SMALL)
    assert_same(loaded.layers, reference)
    assert loaded.input_spec == spec
    assert not list(tmp_path.glob(".*partial")), "temporary file left behind"


def test_keras3_weights_h5_from_real_keras_model(tmp_path, reference):
    model = vgg19.build_keras_vgg19(reference, **SMALL)
    path = tmp_path / "vgg.weights.h5"
    model.save_weights(path)
    loaded = weights.load(path, **SMALL)
    assert_same(loaded.layers, reference)
    assert loaded.input_spec == CAFFE


def test_keras2_applications_h5_layout(tmp_path, reference):
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
    write_keras2_h5(path, reference)
    loaded = weights.load(path, **SMALL)
    assert_same(loaded.layers, reference)
    assert loaded.input_spec.channel_order == "BGR"


def write_vgg19_npy(path, w: vgg19.WeightDict) -> None:
    np.save(path, np.array({k: [kb[0], kb[1]] for k, kb in w.items()}, dtype=object), allow_pickle=True)


def test_vgg19_npy_needs_explicit_pickle_permission(tmp_path, reference):
    path = tmp_path / "vgg19.npy"
    write_vgg19_npy(path, reference)
    with pytest.raises(UserError, match="allow-pickle"):
        weights.load(path, **SMALL)
    loaded = weights.load(path, allow_pickle=True, **SMALL)
    assert_same(loaded.layers, reference)
    assert loaded.input_spec == CAFFE


def test_pickle_is_not_run_without_permission(tmp_path, reference):
    """A malicious .npy whose unpickling would create a file: refused, and the file never appears."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npy"
    np.save(path, np.array([Exploit()], dtype=object), allow_pickle=True)
    with pytest.raises(UserError):
        weights.load(path, **SMALL)
    assert not marker.exists()


@pytest.mark.parametrize("new_field_order", [True, False])
def test_matconvnet_mat_in_both_field_orders(tmp_path, reference, new_field_order):
    path = tmp_path / "imagenet-vgg-verydeep-19.mat"
    average = np.broadcast_to(np.array([120.0, 115.0, 100.0]), (4, 4, 3))
    scipy.io.savemat(path, {"layers": matconvnet_layers(reference, new_field_order),
                            "meta": {"normalization": {"averageImage": average}}})
    loaded = weights.load(path, **SMALL)
    assert_same(loaded.layers, reference)
    assert loaded.input_spec.channel_order == "RGB"
    np.testing.assert_allclose(loaded.input_spec.mean, (120.0, 115.0, 100.0))


def test_matconvnet_class_order_is_mapped_to_sorted_synsets(tmp_path):
    """A .mat whose classes are listed in another order gets fc8's columns permuted to ours."""
    w = vgg19.random_weights(seed=3, input_size=32)  # 1000 classes
    synsets = labels.synsets()
    file_order = np.random.default_rng(0).permutation(1000)
    file_w = dict(w)
    file_w["fc8"] = (w["fc8"][0][:, file_order],
                     w["fc8"][1][file_order] + np.arange(1000, dtype=np.float32)[file_order])
    path = tmp_path / "vgg.mat"
    names = np.array([synsets[i] for i in file_order], dtype=object)
    cells = []
    for spec in vgg19.layer_specs(input_size=32):
        kernel, bias = file_w[spec.name]
        cell = np.empty(2, dtype=object)
        cell[0], cell[1] = kernel, bias
        cells.append({"name": spec.name, "type": "conv", "weights": cell})
    array = np.empty(len(cells), dtype=object)
    array[:] = cells
    scipy.io.savemat(path, {"layers": array, "meta": {"classes": {"name": names}}})
    loaded = weights.load(path, input_size=32)
    np.testing.assert_array_equal(loaded.layers["fc8"][0], w["fc8"][0])
    np.testing.assert_array_equal(loaded.layers["fc8"][1], w["fc8"][1] + np.arange(1000, dtype=np.float32))


def test_file_is_opened_exactly_once(tmp_path, reference, monkeypatch):
    path = tmp_path / "vgg.npz"
    weights.save(path, reference)
    write_keras2_h5(tmp_path / "k.h5", reference)
    write_vgg19_npy(tmp_path / "v.npy", reference)
    paths = [path, tmp_path / "k.h5", tmp_path / "v.npy"]
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    for p in paths:
        opened.clear()
        weights.load(p, allow_pickle=True, **SMALL)
        assert opened.count(str(p)) == 1, (p, opened)


def test_wrong_shape_names_layer_and_both_shapes(tmp_path, reference):
    bad = dict(reference)
    bad["conv3_2"] = (np.zeros((3, 3, 256, 128), np.float32), reference["conv3_2"][1])
    path = weights.save(tmp_path / "bad.npz", bad)
    with pytest.raises(UserError, match=r"conv3_2 kernel has shape \(3, 3, 256, 128\), expected \(3, 3, 256, 256\)"):
        weights.load(path, **SMALL)


def test_missing_layer_is_named(tmp_path, reference):
    partial = {k: v for k, v in reference.items() if k != "fc7"}
    path = weights.save(tmp_path / "partial.npz", partial)
    with pytest.raises(UserError, match="layer fc7 is missing"):
        weights.load(path, **SMALL)


def test_full_size_file_is_checked_against_full_vgg19(tmp_path, reference):
    """Small-variant weights are rejected by the default (224x224, 1000 classes) check, naming fc6."""
    path = weights.save(tmp_path / "small.npz", reference)
    with pytest.raises(UserError, match=r"fc6 kernel has shape \(512, 4096\), expected \(25088, 4096\)"):
        weights.load(path)


@pytest.mark.parametrize("name,content,message", [
    ("missing.npz", None, "cannot open"),
    ("garbage.h5", b"not an hdf5 file", "not a readable Keras HDF5"),
    ("garbage.npz", b"PK\x03\x04 truncated", "not a readable"),
    ("weights.pt", b"", "unknown weight file type"),
])
def test_bad_files_give_user_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        weights.load(path)
