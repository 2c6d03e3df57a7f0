"""ImageNet val layout and label sources, the embedded sample, and the convert/inspect/eval CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from tfbench import imagenet
from tfbench.data import imagenet_val, labels, reader
from tfbench.plumbing.errors import UserError

REPO = Path(__file__).resolve().parent.parent


def test_embedded_sample_is_deterministic_and_correctly_labelled(tmp_path):
    a = imagenet_val.embedded_sample(tmp_path / "a")
    b = imagenet_val.embedded_sample(tmp_path / "b")
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and len(names) == len(imagenet_val.EMBEDDED_PHOTOS)
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert "ILSVRC2012_val_00001341.JPEG" in names  # chelsea: the first val image of class tabby
    sources, origin = imagenet_val.find_sources(a)
    by_name = {Path(s.path).name: (s.label, s.synset, s.text) for s in sources}
    assert by_name["ILSVRC2012_val_00001341.JPEG"] == (281, "n02123045", "tabby")
    assert "bundled" in origin
    val = imagenet_val.bundled_val_synsets()
    for source in sources:  # every file's number points at a val image of the same class
        number = int(Path(source.path).stem.split("_")[-1])
        assert val[number - 1] == source.synset == labels.synsets()[source.label]


def _val_folder(folder: Path, numbers: list[int]) -> Path:
    folder.mkdir()
    for n in numbers:
        (folder / f"ILSVRC2012_val_{n:08d}.JPEG").write_bytes(b"not decoded by find_sources")
    return folder


def test_devkit_ids_are_mapped_through_meta_mat(tmp_path):
    src = _val_folder(tmp_path / "val", [1, 2, 3])
    data = tmp_path / "devkit" / "data"
    data.mkdir(parents=True)
    # Devkit ids are NOT sorted-synset indices: id 1 is n02119789 (kit fox), sorted index 278.
    table = [(1, "n02119789"), (2, "n02100735"), (3, "n01440764")]
    synsets = np.zeros(len(table), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    for i, (devkit_id, wnid) in enumerate(table):
        synsets[i] = (devkit_id, wnid)
    scipy.io.savemat(data / "meta.mat", {"synsets": synsets})
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("3\n1\n2\n")
    sources, origin = imagenet_val.find_sources(src, labels_path=tmp_path / "devkit")
    assert [s.synset for s in sources] == ["n01440764", "n02119789", "n02100735"]
    index = {s: i for i, s in enumerate(labels.synsets())}
    assert [s.label for s in sources] == [index["n01440764"], index["n02119789"], index["n02100735"]]
    assert sources[1].label != 1 - 1  # the devkit id minus one would have been the wrong class
    assert "devkit" in origin


def test_kaggle_csv_and_label_offset(tmp_path):
    src = _val_folder(tmp_path / "val", [8726, 3])
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\n"
                   "ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n"
                   "ILSVRC2012_val_00000003,n02105855 1 2 3 4\n")
    sources, origin = imagenet_val.find_sources(src, labels_path=csv, label_offset=1)
    index = {s: i for i, s in enumerate(labels.synsets())}
    assert [(Path(s.path).name, s.label) for s in sources] == [
        ("ILSVRC2012_val_00000003.JPEG", index["n02105855"] + 1), ("ILSVRC2012_val_00008726.JPEG",
                                                                    index["n02119789"] + 1)]
    assert "kaggle" in origin
    with pytest.raises(UserError, match="offset"):
        imagenet_val.find_sources(src, label_offset=2)


def test_per_synset_folders(tmp_path):
    for synset in ("n01440764", "n02123045"):
        (tmp_path / "val" / synset).mkdir(parents=True)
        (tmp_path / "val" / synset / f"{synset}_1.JPEG").write_bytes(b"x")
    sources, origin = imagenet_val.find_sources(tmp_path / "val")
    assert [(s.synset, s.label) for s in sources] == [("n01440764", 0), ("n02123045", 281)]
    (tmp_path / "val" / "n99999999").mkdir()
    with pytest.raises(UserError, match="n99999999"):
        imagenet_val.find_sources(tmp_path / "val")


def test_cli_convert_inspect_eval_on_the_embedded_sample(tmp_path, capsys):
    logdir = tmp_path / "logs"
    assert imagenet.main(["--logdir", str(logdir), "convert", "--shards", "2", "--workers", "1",
                          "--label-offset", "1"]) == 0
    out = logdir / "imagenet" / "sample-tfrecords"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["label_convention"]["name"] == "tensorflow-models" and manifest["written"] == 5
    stored = [tf.train.Example.FromString(r.numpy()).features.feature["image/class/label"].int64_list.value[0]
              for r in reader.records(out)[0]]
    assert 282 in stored  # tabby is 281 + 1 in the tensorflow/models convention ...
    assert 281 in imagenet_val.class_counts(out)  # ... and 0-based again when read
    capsys.readouterr()

    assert imagenet.main(["--logdir", str(logdir), "inspect", str(out), "--examples", "2"]) == 0
    printed = capsys.readouterr().out
    assert "tabby" in printed and "5 written" in printed
    sizes = {}  # file name -> (width, height) as stored
    for r in reader.records(out)[0]:
        f = tf.train.Example.FromString(r.numpy()).features.feature
        sizes[f["image/filename"].bytes_list.value[0].decode()] = (f["image/width"].int64_list.value[0],
                                                                  f["image/height"].int64_list.value[0])
    shown = [line.split() for line in printed.splitlines() if line.startswith("example ")]
    assert len(shown) == 2 and len(set(sizes.values())) > 1
    for words in shown:  # "example 0: NAME WxH (width x height) ..."
        assert words[4:7] == ["(width", "x", "height)"]
        assert words[3] == "{}x{}".format(*sizes[words[2]])
    events = list((logdir / "imagenet").glob("2*/events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent), size_guidance={"tensors": 0}).Reload()
    tags = acc.Tags()["tensors"]
    assert len(tags) == 6 and any(t.endswith("/original") for t in tags)
    assert any("normalised_caffe" in t for t in tags)

    assert imagenet.main(["--logdir", str(logdir), "eval", str(out), "--batch-size", "4"]) == 0
    result = json.loads(next((logdir / "imagenet").glob("*/eval.json")).read_text())
    assert result["images"] == 5 and 0.0 <= result["top1"] <= result["top5"] <= 1.0
    assert result["input_spec"]["channel_order"] == "BGR"  # random weights declare Keras' caffe mode
    with pytest.raises(UserError, match="missing.npz"):
        imagenet.main(["--logdir", str(logdir), "eval", str(out), "--weights", str(tmp_path / "missing.npz")])


def test_cli_errors_are_one_line_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tfbench.imagenet", "convert", "--src", str(tmp_path / "nope"),
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --src") and "Traceback" not in result.stderr
