"""Exercise 4.10: least squares, softmax regression and kNN in TensorFlow against NumPy, SciPy and scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.distance import cdist
from sklearn.neighbors import KNeighborsClassifier

from tfbench import classic as command
from tfbench.data import mnist
from tfbench.models import classic
from tfbench.plumbing.errors import UserError
from tfbench.training import classic_mnist


@pytest.fixture(scope="module")
def digits():
    data = mnist.load_embedded()
    return (data.x_train.reshape(4000, -1), data.y_train, data.x_test.reshape(1000, -1), data.y_test)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One run of the command with its scikit-learn peers: L2, k = 1, 3, 5."""
    logdir = tmp_path_factory.mktemp("logs")
    assert command.main(["--k", "1", "3", "5", "--metrics", "l2", "--logdir", str(logdir)]) == 0
    [run] = (logdir / "classic").iterdir()
    return run, json.loads((run / "results.json").read_text())


def test_distances_match_scipy(digits):
    x_train, _, x_test, _ = digits
    q, r = tf.constant(x_test[:13]), tf.constant(x_train[:29])
    l2 = classic.pairwise_distances(q, r, "l2").numpy()
    np.testing.assert_allclose(l2, cdist(x_test[:13], x_train[:29], "sqeuclidean"), rtol=1e-4, atol=1e-3)
    l1 = classic.pairwise_distances(q, r, "l1").numpy()
    np.testing.assert_allclose(l1, cdist(x_test[:13], x_train[:29], "cityblock"), rtol=1e-5)
    assert classic.pairwise_distances(r, r, "l2").numpy().min() == 0.0  # clamped, never negative
    with pytest.raises(ValueError, match="metric must be one of"):
        classic.pairwise_distances(q, r, "cosine")


@pytest.mark.parametrize("k", [1, 3, 4, 5, 8])
def test_knn_l2_equals_sklearn_on_the_real_split(digits, k):
    x_train, y_train, x_test, y_test = digits
    knn = classic.KNearestNeighbours(x_train, y_train, metric="l2")
    ours = knn.predict(x_test, k)
    theirs = KNeighborsClassifier(k, algorithm="brute").fit(x_train, y_train).predict(x_test)
    np.testing.assert_array_equal(ours, theirs)
    # the equality is meaningful: no two references tie at the k-th place (where the two orders could differ)
    distances, _ = knn.kneighbors(x_test, k + 1)
    assert np.all(distances[:, k - 1] < distances[:, k])
    if k % 2 == 0:  # even k has vote ties, and they go to the smallest label in both
        counts = np.stack([np.bincount(row, minlength=10) for row in y_train[knn.kneighbors(x_test, k)[1]]])
        assert np.sum((counts == counts.max(1, keepdims=True)).sum(1) > 1) > 5


def test_knn_l1_equals_sklearn_and_eager_equals_graph(digits):
    x_train, y_train, x_test, _ = digits
    knn = classic.KNearestNeighbours(x_train, y_train, metric="l1")
    queries = x_test[::4]  # 250 of the 1,000 (L1 costs ~20x L2)
    ours = knn.predict(queries, 3)
    theirs = KNeighborsClassifier(3, algorithm="brute", metric="manhattan").fit(x_train, y_train).predict(queries)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(knn.predict(queries[:24], 3, graph=False), ours[:24])
    l2 = classic.KNearestNeighbours(x_train, y_train, metric="l2", batch_size=7)
    np.testing.assert_array_equal(l2.predict(x_test[:100], 5, graph=False), l2.predict(x_test[:100], 5))


def test_vote_ties_go_to_the_smallest_label_like_sklearn():
    # 1-D references at distinct distances from 0; labels chosen so even k has tied votes
    refs = np.array([[1.0], [-2.0], [3.0], [-4.0], [5.0], [-6.0]], np.float32)
    labels = np.array([7, 2, 2, 7, 5, 5])
    queries = np.array([[0.0], [0.4], [-0.4], [10.0]], np.float32)
    knn = classic.KNearestNeighbours(refs, labels, metric="l2")
    for k in range(1, 7):
        theirs = KNeighborsClassifier(k, algorithm="brute").fit(refs, labels).predict(queries)
        np.testing.assert_array_equal(knn.predict(queries, k), theirs, err_msg=f"k={k}")
    assert knn.predict(queries[:1], 2)[0] == 2  # one vote each for 7 and 2: the smaller label
    votes = tf.constant([[3, 1, 1, 3], [9, 9, 0, 0], [4, 4, 4, 4]])
    np.testing.assert_array_equal(classic.majority_vote(votes, 10).numpy(), [1, 0, 4])


def test_batching_and_peak_memory(digits):
    x_train, y_train, x_test, _ = digits
    small = classic.KNearestNeighbours(x_train, y_train, batch_size=3)
    big = classic.KNearestNeighbours(x_train, y_train)
    d_small, i_small = small.kneighbors(x_test[:50], 4)
    d_big, i_big = big.kneighbors(x_test[:50], 4)
    np.testing.assert_array_equal(i_small, i_big)
    np.testing.assert_allclose(d_small, d_big, rtol=1e-5)
    assert big.batch_size() == 500 and big.peak_bytes() == 500 * 4000 * 4 == big.peak_bytes(graph=False)
    l1 = classic.KNearestNeighbours(x_train, y_train, metric="l1")
    assert l1.peak_bytes(graph=False) == 8 * 4000 * 784 * 4 and l1.peak_bytes(graph=True) == 100 * 4000 * 4
    chosen = classic.KNearestNeighbours(x_train, y_train, metric="l1", batch_size=3)
    assert chosen.batch_size(graph=True) == chosen.batch_size(graph=False) == 3
    assert small.predict(x_test[:0], 3).shape == (0,)
    with pytest.raises(ValueError, match="k must be between 1 and 4000"):
        small.predict(x_test[:2], 4001)


def test_least_squares_matches_numpy(digits):
    x_train, y_train, x_test, y_test = digits
    model = classic.fit_least_squares(x_train[:1000], y_train[:1000])
    design = np.concatenate([x_train[:1000], np.ones((1000, 1), np.float32)], 1).astype(np.float64)
    weights, *_ = np.linalg.lstsq(design, np.eye(10)[y_train[:1000]], rcond=None)  # minimum norm
    np.testing.assert_allclose(model.weights.numpy(), weights, atol=2e-3)
    ours = model.predict(x_test)
    theirs = (np.concatenate([x_test, np.ones((1000, 1), np.float32)], 1) @ weights).argmax(1)
    assert np.mean(ours == theirs) > 0.995
    ridge = classic.fit_least_squares(x_train, y_train, l2=10.0)
    assert classic.accuracy(ridge.predict(x_test), y_test) > 0.8


def test_softmax_regression_learns(digits):
    x_train, y_train, x_test, y_test = digits
    model = classic.SoftmaxRegression(784)
    losses = model.fit(x_train, y_train, steps=60, learning_rate=0.1)
    assert losses[0] == pytest.approx(np.log(10), rel=1e-5)  # zero weights: uniform over ten classes
    assert losses[-1] < 0.5 * losses[0]
    assert classic.accuracy(model.predict(x_test), y_test) > 0.8


def test_command_accuracy_floors_and_peers(report):
    run, results = report
    assert results["data"] == mnist.EMBEDDED_SOURCE and results["train"] == 4000 and results["test"] == 1000
    rows = {r["method"].split(" (")[0]: r for r in results["rows"]}
    softmax = rows["softmax regression"]
    assert softmax["accuracy"] >= 0.87 and softmax["peer"].startswith("LogisticRegression")
    assert abs(softmax["accuracy"] - softmax["peer_accuracy"]) <= 0.02
    lstsq = rows["least squares on one-hot"]
    assert lstsq["agreement"] > 0.995 and abs(lstsq["accuracy"] - lstsq["peer_accuracy"]) <= 0.005
    for k in (1, 3, 5):
        row = rows[f"kNN k={k} l2"]
        assert row["agreement"] == 1.0 and row["accuracy"] == row["peer_accuracy"]
    assert rows["kNN k=3 l2"]["accuracy"] >= 0.92  # the default k and metric
    assert results["knn_accuracy"]["l2"]["3"] == rows["kNN k=3 l2"]["accuracy"]


def test_command_tensorboard(report):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, results = report
    acc = EventAccumulator(str(run), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    per_k = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors("knn_accuracy/l2")}
    assert per_k == pytest.approx({int(k): v for k, v in results["knn_accuracy"]["l2"].items()})
    assert "sklearn_knn_accuracy/l2" in tags["tensors"] and "softmax_regression/loss" in tags["tensors"]
    assert {"results", "confusion_counts/knn_k3_l2", "misclassified_list/knn_k3_l2"} <= set(tags["tensors"])
    images = {t: acc.Tensors(t)[0] for t in ("confusion_matrix/knn_k3_l2", "misclassified/knn_k3_l2")}
    confusion = tf.io.decode_png(tf.make_ndarray(images["confusion_matrix/knn_k3_l2"].tensor_proto)[2]).numpy()
    assert confusion.shape == (160, 160, 3)
    grid = tf.io.decode_png(tf.make_ndarray(images["misclassified/knn_k3_l2"].tensor_proto)[2]).numpy()
    assert grid.shape == (12 * 32, 4 * 32, 3)  # 12 misclassified digits, each with its 3 neighbours
    text = tf.make_ndarray(acc.Tensors("results")[0].tensor_proto).item().decode()
    assert "| kNN k=3 l2 (function) |" in text and "KNeighborsClassifier" in text


def test_confusion_matrix_and_grid_pictures():
    counts = classic_mnist.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), num_classes=3)
    np.testing.assert_array_equal(counts, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    image = classic_mnist.confusion_image(counts, cell=4)
    assert image.shape == (12, 12, 3) and image[6, 6, 1] == 255 and image[2, 6, 0] > 200  # diagonal, an error
    queries = np.zeros((2, 28, 28), np.float32)
    grid = classic_mnist.neighbour_grid(queries, np.array([1, 2]), np.ones((2, 3, 28, 28), np.float32),
                                  np.array([[1, 3, 3], [3, 2, 3]]))
    assert grid.shape == (64, 128, 3)
    assert tuple(grid[0, 0]) == (255, 0, 0) and tuple(grid[0, 32]) == (0, 204, 0) and tuple(grid[0, 64]) == (204, 0, 0)


def test_command_errors(tmp_path):
    with pytest.raises(UserError, match="--metrics takes l2 and/or l1"):
        command.main(["--metrics", "cosine", "--logdir", str(tmp_path)])
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n")
    with pytest.raises(UserError, match=r"bad.csv: 1 rows of 3 columns, expected rows of 785"):
        command.main(["--data", str(bad), "--logdir", str(tmp_path)])


def test_benchmark_writes_json(tmp_path):
    result = command.run_benchmark(["--metrics", "l2", "--warmup", "0", "--repeats", "2", "--logdir", str(tmp_path)])
    saved = json.loads(Path(result["path"]).read_text())
    assert saved["bench"] == "classic" and saved["same_predictions"] == {"l2": True}
    assert [r["case"] for r in saved["rows"]] == ["tfbench l2 tf.function", "tfbench l2 eager",
                                                  "scikit-learn l2 brute"]
    assert all(r["median_ms"] > 0 and r["repeats"] == 2 and r["queries"] == 1000 for r in saved["rows"])
    assert saved["rows"][0]["batch_size"] == 500 and saved["rows"][0]["peak_mib"] == pytest.approx(7.63, abs=0.01)
    ms = {r["case"]: r["median_ms"] for r in saved["rows"]}
    key = "l2: scikit-learn / tfbench tf.function (>1: ours faster)"
    assert saved["ratios"][key] == pytest.approx(ms["scikit-learn l2 brute"] / ms["tfbench l2 tf.function"])
