"""tfbench.training.loops: the three loops agree, the staircase schedule is wired in, logs and checkpoints work."""

from __future__ import annotations

import glob

import numpy as np
import pytest
import tensorflow as tf

from tfbench.data import mnist
from tfbench.models import lenet5, mlp
from tfbench.plumbing.errors import UserError
from tfbench.training import loops as train

#: The stated agreement of the three loops' loss curves over the first steps (see train.py).
LOSS_RTOL = 1e-4


@pytest.fixture(scope="module")
def digits():
    """320 training and 100 test images of the embedded digits, padded to 32x32 for LeNet-5."""
    data = mnist.load_embedded()
    return (mnist.pad_to_32(data.x_train[:320]), data.y_train[:320],
            mnist.pad_to_32(data.x_test[:100]), data.y_test[:100])


def weights_of(model):
    """LeNet-5 weights as a name-sorted list (a tf.Module orders its variables differently from Keras)."""
    weights = model.get_weights() if isinstance(model, lenet5.LeNet5Module) else lenet5.keras_weights(model)
    return [w for name in sorted(weights) for w in weights[name]]


def test_schedule_is_exercise_4_8():
    schedule = train.lr_schedule()
    for step in (0, 1, 9_999, 10_000, 19_999, 20_000, 35_000, 100_000):
        assert float(schedule(step)) == pytest.approx(0.1 * 0.9 ** (step // 10_000), rel=1e-6)
    assert schedule.get_config()["staircase"] is True


def test_epoch_order_is_a_seeded_permutation():
    a = train.epoch_order(100, 32, seed=0, epoch=0)
    assert len(a) == 96 and len(set(a)) == 96  # whole batches, no repeats
    np.testing.assert_array_equal(a, train.epoch_order(100, 32, seed=0, epoch=0))
    assert not np.array_equal(a, train.epoch_order(100, 32, seed=0, epoch=1))
    x = np.arange(100, dtype=np.float32)[:, None]
    y = np.arange(100)
    batches = list(train.epoch_dataset(x, y, 32, 0, 0, skip_batches=1))
    assert len(batches) == 2
    np.testing.assert_array_equal(batches[0][1].numpy(), a[32:64])


def test_three_loops_same_loss_curve(digits):
    """Same seed, same batches: eager, tf.function and fit give one loss curve (and the tf.Module too)."""
    x, y, xt, yt = digits
    steps = 20  # 4 epochs of 5 batches: crosses epoch boundaries and reshuffles
    curves, final = {}, {}
    for mode in train.MODES:
        model = lenet5.build_keras_lenet5(seed=0)
        history = train.train(model, x, y, xt, yt, mode=mode, epochs=4, batch_size=64, momentum=0.9,
                              progress=False, log=lambda _: None)
        assert history.steps == list(range(1, steps + 1))
        curves[mode], final[mode] = np.array(history.losses), weights_of(model)
        np.testing.assert_allclose(history.lrs, 0.1, rtol=1e-6)
    module = lenet5.LeNet5Module(seed=0)
    history = train.train(module, x, y, xt, yt, mode="eager", epochs=4, batch_size=64, momentum=0.9,
                          progress=False, log=lambda _: None)
    curves["module"], final["module"] = np.array(history.losses), weights_of(module)
    assert curves["eager"][-1] < 0.8 * curves["eager"][0]  # it learns
    for mode in ("function", "fit", "module"):
        np.testing.assert_allclose(curves[mode], curves["eager"], rtol=LOSS_RTOL, err_msg=mode)
        for a, b in zip(final[mode], final["eager"]):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg=mode)


def test_loss_is_cross_entropy_of_the_batch(digits):
    """The first logged loss equals NumPy's softmax cross-entropy of the first batch under the initial weights."""
    x, y, xt, yt = digits
    model = mlp.build_keras_mlp((32,), seed=1)
    images = x[train.epoch_order(len(x), 64, 0, 0)[:64], 2:30, 2:30]  # the MLP reads 28x28
    labels = y[train.epoch_order(len(x), 64, 0, 0)[:64]]
    logits = np.asarray(model(images)).astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    expected = -logp[np.arange(64), labels].mean()
    history = train.train(model, x[:, 2:30, 2:30], y, xt[:, 2:30, 2:30], yt, mode="fit", epochs=1,
                          batch_size=64, max_steps=1, progress=False, log=lambda _: None)
    assert history.losses[0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("mode", train.MODES)
def test_staircase_drop_in_every_loop(digits, mode):
    """Started at step 9,997, each loop logs lr 0.1 for steps 9,998-10,000 and 0.09 from step 10,001."""
    x, y, xt, yt = digits
    model = mlp.build_keras_mlp((16,), seed=0)
    optimizer = train.make_optimizer()
    optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(9_997)
    spe = train.steps_per_epoch(len(x), 64)
    history = train.train(model, x[:, 2:30, 2:30], y, xt[:, 2:30, 2:30], yt, mode=mode, epochs=10_005 // spe,
                          batch_size=64, optimizer=optimizer, max_steps=10_003, progress=False,
                          log=lambda _: None)
    assert history.steps == [9_998, 9_999, 10_000, 10_001, 10_002, 10_003]
    np.testing.assert_allclose(history.lrs, [0.1, 0.1, 0.1, 0.09, 0.09, 0.09], rtol=1e-6)


def test_tensorboard_logs(tmp_path, digits):
    from tensorboard.backend.event_processing import event_accumulator

    x, y, xt, yt = digits
    model = lenet5.build_keras_lenet5(seed=0)
    history = train.train(model, x, y, xt, yt, mode="function", epochs=2, batch_size=64, run_dir=tmp_path,
                          progress=False, log=lambda _: None)
    acc = event_accumulator.EventAccumulator(str(tmp_path / "train"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "lr/learning_rate", "train/epoch_loss", "accuracy"} <= set(tags["tensors"])
    assert acc.SummaryMetadata("train/loss").summary_description.startswith("Cross-entropy")
    losses = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("train/loss")]
    assert [e.step for e in acc.Tensors("train/loss")] == list(range(1, 11))
    np.testing.assert_allclose(losses, history.losses, rtol=1e-6)
    np.testing.assert_allclose([float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("lr/learning_rate")],
                               0.1, rtol=1e-6)
    test_run = event_accumulator.EventAccumulator(str(tmp_path / "test"), size_guidance={"tensors": 0})
    test_run.Reload()
    test_acc = [float(tf.make_ndarray(e.tensor_proto)) for e in test_run.Tensors("accuracy")]
    assert test_acc == pytest.approx([e["test_accuracy"] for e in history.epochs])
    train_acc = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("accuracy")]
    assert train_acc == pytest.approx([e["train_accuracy"] for e in history.epochs])
    schedule = event_accumulator.EventAccumulator(str(tmp_path / "lr_schedule"), size_guidance={"tensors": 0})
    schedule.Reload()
    lrs = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in schedule.Tensors("lr/schedule")}
    assert lrs[0] == pytest.approx(0.1) and lrs[9_500] == pytest.approx(0.1)
    assert lrs[10_000] == pytest.approx(0.09) and lrs[100_000] == pytest.approx(0.1 * 0.9 ** 10)
    assert "data/first_16_training_images" in tags["tensors"]
    histograms = [t for t in tags["tensors"] if t.startswith("weights/") and t.endswith(("kernel", "bias"))]
    assert len(histograms) == 10  # kernel and bias of c1, c3, f5, f6, output
    graph = tf.compat.v1.GraphDef.FromString(acc.Graph().SerializeToString())
    ops = {n.op for n in graph.node}
    assert {"Conv2D", "Conv2DBackpropFilter", "AssignVariableOp"} <= ops | {
        n.op for f in graph.library.function for n in f.node_def}


def test_checkpoint_resume_in_process(tmp_path, digits):
    """Stop after 7 steps, resume into fresh objects: same weights and momentum as one uninterrupted run."""
    x, y, xt, yt = digits
    ref = lenet5.build_keras_lenet5(seed=0)
    ref_opt = train.make_optimizer(momentum=0.9)
    train.train(ref, x, y, xt, yt, mode="function", epochs=3, batch_size=64, optimizer=ref_opt,
                progress=False, log=lambda _: None)

    first = lenet5.build_keras_lenet5(seed=0)
    h1 = train.train(first, x, y, xt, yt, mode="eager", epochs=3, batch_size=64, momentum=0.9, max_steps=7,
                     checkpoint_dir=tmp_path, checkpoint_every=7, progress=False, log=lambda _: None)
    assert h1.steps[-1] == 7 and tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-7")

    messages = []
    resumed = lenet5.build_keras_lenet5(seed=1)  # different initial weights: all must come from the checkpoint
    opt = train.make_optimizer(momentum=0.9)
    h2 = train.train(resumed, x, y, xt, yt, mode="function", epochs=3, batch_size=64, optimizer=opt,
                     checkpoint_dir=tmp_path, progress=False, log=messages.append)
    assert h2.start_step == 7 and h2.steps == list(range(8, 16))
    assert "at step 7 (epoch 2 of 3, batch 3 of 5)" in messages[0]
    for a, b in zip(weights_of(resumed), weights_of(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(opt.variables, ref_opt.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6, err_msg=a.path)
    assert sorted(glob.glob(str(tmp_path / "ckpt-*.index")))  # epoch-end saves kept


def test_resuming_a_finished_run_says_so(tmp_path, digits):
    """A rerun of a finished run names no epoch beyond the last (no "epoch 2" of 1) and trains nothing."""
    x, y, xt, yt = digits
    train.train(lenet5.build_keras_lenet5(seed=0), x, y, xt, yt, mode="function", epochs=1, batch_size=64,
                checkpoint_dir=tmp_path, progress=False, log=lambda _: None)
    messages: list[str] = []
    history = train.train(lenet5.build_keras_lenet5(seed=0), x, y, xt, yt, mode="function", epochs=1,
                          batch_size=64, checkpoint_dir=tmp_path, progress=False, log=messages.append)
    assert history.start_step == 5 and history.steps == []
    assert "at step 5 (all 1 epochs done: nothing left to train)" in messages[0]
    assert not any("epoch 2" in m for m in messages), messages


def test_checkpoint_from_other_settings_is_refused(tmp_path, digits):
    x, y, xt, yt = digits
    model = lenet5.build_keras_lenet5(seed=0)
    train.train(model, x, y, xt, yt, mode="function", epochs=1, batch_size=64, checkpoint_dir=tmp_path,
                progress=False, log=lambda _: None)
    with pytest.raises(UserError, match=r"different run \(batch_size: checkpoint 64, now 32\)"):
        train.train(lenet5.build_keras_lenet5(seed=0), x, y, xt, yt, mode="function", epochs=1, batch_size=32,
                    checkpoint_dir=tmp_path, progress=False, log=lambda _: None)


def test_user_errors(digits):
    x, y, xt, yt = digits
    with pytest.raises(UserError, match="mode 'fit' needs a Keras model"):
        train.train(lenet5.LeNet5Module(), x, y, xt, yt, mode="fit")
    with pytest.raises(UserError, match="mode must be one of"):
        train.train(lenet5.LeNet5Module(), x, y, xt, yt, mode="graph")
    with pytest.raises(UserError, match="batch size 500 is larger than the 320 training examples"):
        train.train(lenet5.LeNet5Module(), x, y, xt, yt, batch_size=500)
