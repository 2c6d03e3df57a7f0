"""``python -m tfbench.basics <exercise>``: each prints its answer and writes Text cards and pictures; 3.11's table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbench import basics
from tfbench.backprop import optimizers
from tfbench.plumbing.errors import UserError


def only_run(folder: Path) -> Path:
    [run] = list(folder.iterdir())
    return run


def tensorboard(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    return acc


def card(acc, tag: str) -> str:
    import tensorflow as tf

    return tf.make_ndarray(acc.Tensors(tag)[0].tensor_proto).item().decode()


def test_perceptron_command_prints_writes_card_and_picture(tmp_path, capsys):
    assert basics.main(["perceptron", "--logdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| XOR | 0110 |" in out and "no, still wrong after 100 epochs" in out
    assert "| AND | 0001 |" in out and "4/4 right" in out
    run = only_run(tmp_path / "basics" / "perceptron")
    png = run / "decision_lines.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = tensorboard(run)
    assert "perceptron rule converged" in card(acc, "perceptron")
    assert "decision_lines" in acc.Tags()["tensors"]  # the picture as a TensorBoard image


def test_params_and_activations_commands(tmp_path, capsys):
    assert basics.main(["params", "--logdir", str(tmp_path)]) == 0
    assert "22,538 trainable parameters by tfbench's counter, 22,538 by Keras" in capsys.readouterr().out
    assert basics.main(["params", "--widths", "4", "3", "2", "--logdir", str(tmp_path)]) == 0
    assert "4-3-2 MLP: 23 trainable parameters" in capsys.readouterr().out
    assert basics.main(["activations", "--logdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| sigmoid | s(v) * (1 - s(v)) | 0.25 |" in out and "| v / sqrt(1 + v^2) | (1 + v^2)^(-3/2) | 1 |" in out
    run = only_run(tmp_path / "basics" / "activations")
    assert (run / "activations.png").stat().st_size > 10_000
    assert "| ELU |" in card(tensorboard(run), "activations/ranges")


def test_momentum_command_writes_curves_side_by_side(tmp_path, capsys):
    assert basics.main(["momentum", "--steps", "120", "--logdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mu = +0.9 reaches loss 1 after" in out and "faster" in out
    run = only_run(tmp_path / "basics" / "momentum")
    curves = sorted(p.name for p in run.iterdir() if p.is_dir())
    assert curves == ["mu_+0", "mu_+0.5", "mu_+0.9", "mu_-0.5", "mu_-0.9"]
    import tensorflow as tf

    losses = [float(tf.make_ndarray(e.tensor_proto)) for e in tensorboard(run / "mu_+0.9").Tensors(
        "momentum/training_loss")]
    assert len(losses) == 120 and losses[-1] < losses[0] / 2


def test_optimizers_command_writes_its_table_and_beats_plain_sgd(tmp_path, capsys):
    assert basics.main(["optimizers", "--target", "0.85", "--max-epochs", "6", "--train-limit", "2000",
                        "--logdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| method | settings | epochs to 85.0% |" in out
    assert "exercise 3.12 (the same on ImageNet): not run, no ImageNet TFRecords given" in out
    run = only_run(tmp_path / "basics" / "optimizers")
    report = json.loads((run / "speedup.json").read_text())["mnist"]
    results = {r["method"]: r for r in report["results"]}
    assert set(results) == {"plain SGD", "momentum", "Nesterov", "Adam", "lr schedule"}
    sgd_epochs = results["plain SGD"]["epochs_to_target"] or report["max_epochs"] + 1
    faster = [m for m, r in results.items() if r["epochs_to_target"] and r["epochs_to_target"] < sgd_epochs]
    assert faster, results  # at least one improvement reaches the target before plain SGD
    for r in results.values():  # every method stops at the first epoch that reaches the target
        reached = [a >= 0.85 for a in r["accuracy"]]
        assert reached.index(True) + 1 == r["epochs_to_target"] if any(reached) else r["epochs_to_target"] is None
        assert np.all(np.diff(r["seconds"]) > 0)
    text = card(tensorboard(run), "optimizers/mnist")
    assert "speed-up (epochs)" in text and "faster than plain SGD to the target: " in text


def write_tiny_imagenet(folder: Path) -> None:
    """8 JPEGs for each of classes 0..9, each class its own grey level, as TFRecord shards."""
    from PIL import Image

    from tfbench.data import example, writer

    images = folder / "jpeg"
    images.mkdir(parents=True)
    sources = []
    for label in range(10):
        for i in range(8):
            path = images / f"img_{label}_{i}.JPEG"
            Image.new("RGB", (40, 36), (20 + 23 * label + i, 0, 0)).save(path, quality=95)
            sources.append(example.Source(str(path), label, f"n{label:08d}", f"class {label}"))
    writer.write_shards(sources, folder / "shards", num_shards=2, workers=1, progress=False)


def test_optimizers_on_imagenet_tfrecords(tmp_path):
    write_tiny_imagenet(tmp_path)
    data = optimizers.imagenet_digits(tmp_path / "shards")
    assert data.x_train.shape == (64, 32 * 32) and data.x_test.shape == (16, 32 * 32) and data.classes == 10
    text = optimizers.run(tmp_path / "run", target=0.85, max_epochs=2, train_limit=500,
                          imagenet_dir=tmp_path / "shards", imagenet_target=0.2)
    assert "exercise 3.12: ImageNet val TFRecords at" in text and "not run" not in text
    report = json.loads((tmp_path / "run" / "speedup.json").read_text())
    assert report["imagenet"]["network"] == "1024-128-10" and len(report["imagenet"]["results"]) == 5


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="--target 1.5: an accuracy is a fraction"):
        basics.main(["optimizers", "--target", "1.5", "--logdir", str(tmp_path)])
    with pytest.raises(UserError, match="--imagenet .*no_such: no such folder"):
        basics.main(["optimizers", "--imagenet", str(tmp_path / "no_such"), "--logdir", str(tmp_path)])
    with pytest.raises(UserError, match="--widths takes the input width and at least one layer"):
        basics.main(["params", "--widths", "33", "--logdir", str(tmp_path)])
    assert not (tmp_path / "basics").exists()  # refused before any run folder was made
    proc = subprocess.run([sys.executable, "-m", "tfbench.basics", "adder", "--steps", "0"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--steps" in proc.stderr


def test_help_lists_every_exercise_without_tensorflow():
    proc = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv = ['basics', '--help']\n"
                           "try:\n    runpy.run_module('tfbench.basics', run_name='__main__')\n"
                           "except SystemExit:\n    pass\nprint('tensorflow' in sys.modules)"],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().endswith("False"), proc.stdout
    for name in basics.EXERCISES:
        assert name in proc.stdout
