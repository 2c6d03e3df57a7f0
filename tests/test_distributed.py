"""tfbench.distributed: TF_CONFIG checks, input sharding, 1 vs 2 replicas, kill and resume, no orphans, tf.data service.

Multi-process tests start real worker processes (each imports TensorFlow) with hard timeouts
on every wait, so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfbench.benchmarks import distributed as distributed_bench
from tfbench.inspection import complexity as complexity_lib
from tfbench.models import lenet5, vgg19
from tfbench.parallel import cluster as distributed_cluster
from tfbench.parallel import data as distributed_data
from tfbench.parallel import estimate as distributed_estimate
from tfbench.parallel import service as distributed_service
from tfbench.parallel import training as distributed_training
from tfbench.plumbing.errors import UserError
from tfbench.training import loops as train

PY = [sys.executable, "-m", "tfbench.distributed"]
WAIT = 240  # seconds: the hard limit of any single process wait
LOSS_RTOL = 1e-4  # the stated tolerance of "the same loss curve" (float32 sums in another order)
WEIGHTS_RTOL = 1e-6


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def wait_gone(pids, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.2)
    return [p for p in pids if pid_alive(p)]


class Launched:
    """A CLI process whose output lines are read by a thread, so the test can wait for a line with a timeout."""

    def __init__(self, args, env=None, cwd=None):
        self.proc = subprocess.Popen([*PY, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})}, cwd=cwd)
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    break
                continue
            match = regex.search(line)
            if match:
                return match
        self.kill()
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n" + "\n".join(self.lines[-40:]))

    def finish(self, timeout: float = WAIT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("process did not finish:\n" + "\n".join(self.lines[-40:])) from None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def worker_pids(self) -> list[int]:
        return [int(m.group(1)) for line in self.lines if (m := re.match(r"worker \d+: pid (\d+)", line))]


def run_dir_of(lines) -> Path:
    return Path(next(re.match(r"run: (\S+)", line).group(1) for line in lines if line.startswith("run: ")))


# ----------------------------------------------------------------------------- TF_CONFIG


@pytest.mark.parametrize("text, message", [
    ('{"cluster": ', "TF_CONFIG is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'needs a "cluster" object'),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 2}}',
     r"task.index 2 is out of range: the cluster has 2 worker\(s\), so it must be 0..1"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "is not host:port"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}', r"\['ps'\]"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}', "task.type must be 'worker'"),
])
def test_bad_tf_config_is_a_user_error(text, message):
    with pytest.raises(UserError, match=message) as err:
        distributed_cluster.parse_tf_config(text)
    assert "\n" not in str(err.value)


def test_good_tf_config_round_trip():
    configs = distributed_cluster.local_tf_configs(3)
    assert [c.index for c in configs] == [0, 1, 2] and configs[0].is_chief and not configs[2].is_chief
    ports = [int(w.rsplit(":", 1)[1]) for w in configs[0].workers]
    assert len(set(ports)) == 3 and all(w.startswith("127.0.0.1:") for w in configs[0].workers)
    assert distributed_cluster.parse_tf_config(configs[1].to_json()) == configs[1]


def test_bad_tf_config_cli_prints_one_line(tmp_path):
    bad = '{"cluster": {"worker": ["127.0.0.1:5000"]}, "task": {"type": "worker", "index": 3}}'
    out = subprocess.run([*PY, "train", "--strategy", "multiworker", "--logdir", str(tmp_path)],
                         env={**os.environ, "TF_CONFIG": bad}, capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: TF_CONFIG: task.index 3 is out of range: the cluster has 1 worker(s), so it must be 0..0"]
    out = subprocess.run([*PY, "train", "--strategy", "multiworker"], env={**os.environ, "TF_CONFIG": "{oops"},
                         capture_output=True, text=True, timeout=WAIT)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("error: TF_CONFIG is not valid JSON")


# ----------------------------------------------------------------------------- input sharding


@pytest.mark.parametrize("pipelines, replicas_per_worker", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_array_sharding_every_example_once_per_epoch(pipelines, replicas_per_worker):
    """Each example index is the data itself, so what the pipelines yield says who read what."""
    n, global_batch, seed, epoch = 200, 20, 3, 1  # 10 whole steps, nothing dropped
    x = np.arange(n, dtype=np.float32)[:, None]
    y = np.arange(n, dtype=np.int64)
    fn = distributed_data.array_input_fn(x, y, global_batch=global_batch, seed=seed, epoch=epoch)
    per_worker = []
    for pipeline in range(pipelines):
        context = tf.distribute.InputContext(pipelines, pipeline, pipelines * replicas_per_worker)
        batches = [b[1].numpy() for b in fn(context)]
        assert all(len(b) == global_batch // (pipelines * replicas_per_worker) for b in batches)
        per_worker.append(batches)
    seen = np.concatenate([np.concatenate(b) for b in per_worker])
    assert sorted(seen.tolist()) == list(range(n))  # every example exactly once
    if pipelines == 2:
        assert not set(np.concatenate(per_worker[0]).tolist()) & set(np.concatenate(per_worker[1]).tolist())
    # step k of all replicas together = the single-device loop's batch k (same order as tfbench.training.loops)
    order = train.epoch_order(n, global_batch, seed, epoch).reshape(-1, global_batch)
    steps = len(per_worker[0]) // replicas_per_worker
    for k in range(steps):
        step_examples = np.concatenate([per_worker[w][k * replicas_per_worker + r]
                                        for w in range(pipelines) for r in range(replicas_per_worker)])
        assert sorted(step_examples.tolist()) == sorted(order[k].tolist())


def test_array_sharding_resume_skips_done_steps():
    x, y = np.arange(100, dtype=np.float32)[:, None], np.arange(100)
    full = [b[1].numpy() for b in distributed_data.array_input_fn(x, y, global_batch=10, seed=0, epoch=0)(
        tf.distribute.InputContext(1, 0, 1))]
    rest = [b[1].numpy() for b in distributed_data.array_input_fn(x, y, global_batch=10, seed=0, epoch=0,
                                                                  skip_steps=4)(tf.distribute.InputContext(1, 0, 1))]
    assert len(rest) == 6 and all(np.array_equal(a, b) for a, b in zip(full[4:], rest))


@pytest.fixture(scope="module")
def five_shards(tmp_path_factory) -> Path:
    """The embedded ImageNet sample (5 photos) converted by tfbench.imagenet into 5 one-image shards."""
    from tfbench.data import imagenet_val

    root = tmp_path_factory.mktemp("imagenet")
    src = imagenet_val.embedded_sample(root / "sample-val")
    imagenet_val.convert(src, root / "tfrecords", num_shards=5, workers=1, progress=False)
    return root / "tfrecords"


def test_tfrecord_file_level_sharding(five_shards):
    records = distributed_data.open_records(five_shards)
    everything = distributed_service.all_filenames(records)
    assert len(everything) == 5 == records.num_examples
    names = []
    for worker in range(2):
        files, count = records.for_worker(worker, 2)
        assert files == list(records.files[worker::2])
        got = [n.decode() for _, _, n in distributed_data.worker_dataset(records, worker, 2, size=32,
                                                                         with_filenames=True).as_numpy_iterator()]
        assert len(got) == count
        names.append(got)
    assert not set(names[0]) & set(names[1]) and sorted(names[0] + names[1]) == sorted(everything)
    # training takes the same whole number of steps from every worker: min(3, 2) // 1
    assert records.steps_per_epoch(2, 1) == 2
    fn = distributed_data.tfrecord_input_fn(records, global_batch=2, size=32, seed=0, epoch=0)
    for worker in range(2):
        batches = list(fn(tf.distribute.InputContext(2, worker, 2)))
        assert len(batches) == 2 and batches[0][0].shape == (1, 32, 32, 3)
    with pytest.raises(UserError, match="5 shard\\(s\\) cannot be split between 8 workers"):
        records.for_worker(0, 8)


# ----------------------------------------------------------------------------- 1 vs 2 replicas


@pytest.mark.slow
def test_mirrored_and_multiworker_match_one_device(tmp_path):
    """Same global batch (64), seed and data order: the loss curves agree to rtol 1e-4 for 10 steps."""
    common = ["train", "--max-steps", "10", "--global-batch", "64", "--checkpoint-every", "0", "--no-progress",
              "--allreduce-repeats", "3", "--profile-steps", "2"]
    mirrored = Launched([*common, "--strategy", "mirrored", "--logdir", str(tmp_path / "m")])
    multi = Launched([*common, "--strategy", "multiworker", "--workers", "2", "--logdir", str(tmp_path / "w"),
                      "--timeout", str(WAIT)])
    try:  # the reference, in this process, while the others start
        data = distributed_training.load_data("lenet5", None, "0-9", tmp_path)
        one = distributed_training.train_distributed(tf.distribute.OneDeviceStrategy("/cpu:0"), data,
                                                     strategy_name="one", max_steps=10, progress=False,
                                                     allreduce_repeats=0, log=lambda m: None)
        assert mirrored.finish() == 0, "\n".join(mirrored.lines[-30:])
        assert multi.finish() == 0, "\n".join(multi.lines[-30:])
    finally:
        mirrored.kill()
        multi.kill()
    assert one.replicas == 1 and len(one.losses) == 10
    for launched, replicas in ((mirrored, 2), (multi, 2)):
        run = run_dir_of(launched.lines)
        history = json.loads((run / "history.json").read_text())
        assert history["replicas"] == replicas and history["steps"] == list(range(1, 11))
        np.testing.assert_allclose(history["losses"], one.losses, rtol=LOSS_RTOL)
        assert history["weights_abs_sum"] == pytest.approx(one.weights_abs_sum, rel=WEIGHTS_RTOL)
        assert history["losses"][-1] < history["losses"][0]  # it learns
        assert history["allreduce_ms"] > 0
        assert list(run.glob("plugins/profile/*/*.xplane.pb")), "no profiler trace"
        profile = history["profile"]  # read back from the trace: 2 steps, each with collective ops inside
        assert profile["steps"] == 2 and all(0 < a < s for a, s in zip(profile["allreduce_ms"], profile["step_ms"]))
    assert "MirroredStrategy: 2 replica(s)" in "\n".join(mirrored.lines)
    assert any("CollectiveAllReduceStrategy: 2 replica(s)" in line for line in multi.lines)
    assert any("ring all-reduce estimate" in line for line in mirrored.lines)
    assert not wait_gone(multi.worker_pids(), 10)


# ----------------------------------------------------------------------------- failures


def latest_step(checkpoint_dir: Path) -> int:
    text = (checkpoint_dir / "checkpoint").read_text()
    return int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', text).group(1))


@pytest.mark.slow
def test_kill_a_worker_then_rerun_resumes_from_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    args = ["train", "--strategy", "multiworker", "--workers", "2", "--epochs", "200", "--checkpoint-every", "10",
            "--checkpoint-dir", str(ckpt), "--no-progress", "--profile-steps", "0", "--allreduce-repeats", "0",
            "--logdir", str(tmp_path), "--timeout", str(WAIT)]
    job = Launched(args)
    try:
        job.wait_for(r"^\[worker 0\] checkpoint step 20$")
        pids = job.worker_pids()
        assert len(pids) == 2
        os.kill(pids[1], signal.SIGKILL)
        assert job.finish(60) == 1
    finally:
        job.kill()
    assert any("worker 1 (pid" in line and "exited with code -9" in line for line in job.lines), job.lines[-10:]
    assert not wait_gone(pids, 30), "a worker outlived the launcher"
    saved = latest_step(ckpt)
    assert saved >= 20 and saved % 10 == 0
    assert not list(ckpt.glob(".worker-*")), "non-chief scratch checkpoints left behind"

    rerun = Launched([*args, "--max-steps", str(saved + 5)])
    try:
        assert rerun.finish() == 0, "\n".join(rerun.lines[-30:])
    finally:
        rerun.kill()
    assert any(f"resumed from {ckpt}/ckpt-{saved} at step {saved}" in line for line in rerun.lines)
    history = json.loads((run_dir_of(rerun.lines) / "history.json").read_text())
    assert history["start_step"] == saved and history["steps"] == list(range(saved + 1, saved + 6))
    assert latest_step(ckpt) == saved + 5 and np.isfinite(history["losses"]).all()


def test_ctrl_c_and_dead_launcher_leave_no_orphans(tmp_path):
    args = ["train", "--strategy", "multiworker", "--workers", "2", "--epochs", "200", "--checkpoint-every", "0",
            "--no-progress", "--profile-steps", "0", "--allreduce-repeats", "0", "--logdir", str(tmp_path),
            "--timeout", str(WAIT)]
    job = Launched(args)
    try:
        job.wait_for(r"^\[worker 0\] CollectiveAllReduceStrategy")
        pids = job.worker_pids()
        job.proc.send_signal(signal.SIGINT)
        assert job.finish(60) == 130
    finally:
        job.kill()
    assert len(pids) == 2 and not wait_gone(pids, 30), "Ctrl-C left workers running"
    # SIGKILL gives the launcher no chance to clean up: the workers notice their parent is gone and exit
    job = Launched(args)
    try:
        job.wait_for(r"^worker 1: pid")
        pids = job.worker_pids()
        job.proc.kill()
        job.proc.wait(timeout=30)
    finally:
        job.kill()
    assert len(pids) == 2 and not wait_gone(pids, 30), "workers outlived a killed launcher"


# ----------------------------------------------------------------------------- tf.data service


def test_check_exactly_once_finds_missing_and_repeated():
    assert distributed_service.check_exactly_once(["a", "b"], [["a"], ["b"]], 1)["exactly_once"]
    bad = distributed_service.check_exactly_once(["a", "b", "c"], [["a", "b"], ["b"]], 1)
    assert bad["missing"] == ["c"] and bad["extra"] == ["b"] and not bad["exactly_once"]
    assert not distributed_service.check_exactly_once(["a"], [["a"]], 2)["exactly_once"]


@pytest.mark.slow
def test_data_service_two_consumers_receive_every_example_once(five_shards, tmp_path):
    job = Launched(["data-service", "--data", str(five_shards), "--data-workers", "2", "--consumers", "2",
                    "--epochs", "2", "--image-size", "32", "--batch-size", "1", "--logdir", str(tmp_path),
                    "--timeout", str(WAIT)])
    try:
        assert job.finish() == 0, "\n".join(job.lines[-30:])
    finally:
        job.kill()
    summary = json.loads(next((tmp_path / "distributed").glob("*/data_service.json")).read_text())
    assert summary["exactly_once"] and summary["received"] == summary["expected"] == 10
    assert summary["missing"] == [] and summary["extra"] == []
    assert sum(c["examples"] for c in summary["per_consumer"]) == 10
    for consumer in summary["per_consumer"]:  # each trained its VGG19 on every batch it received
        assert consumer["train_steps"] == consumer["examples"] and np.isfinite(consumer["losses"]).all()
    assert summary["dispatcher"].startswith("grpc://127.0.0.1:")
    consumer_pids = [c["pid"] for c in summary["per_consumer"]]
    assert len(set(consumer_pids)) == 2 and not wait_gone(consumer_pids, 10)
    assert "every example exactly once per epoch over 2 epoch(s): yes" in "\n".join(job.lines)


# ----------------------------------------------------------------------------- estimate and benchmark


def test_gradient_bytes_and_ring_estimate():
    vgg, conv_only = distributed_estimate.vgg19_costs()
    assert vgg.params == vgg19.TRAINABLE_PARAMS and vgg.gradient_bytes == 4 * vgg19.TRAINABLE_PARAMS
    assert 570e6 < vgg.gradient_bytes < 580e6  # "about 575 MB"
    fc6 = next(s for s in vgg19.layer_specs() if s.name == "fc6")
    assert fc6.params / vgg.params > 0.7 and "71.5%" in vgg.note
    assert conv_only.params == sum(s.params for s in vgg19.layer_specs() if s.kind == "conv")
    lenet = distributed_estimate.lenet5_cost()
    assert lenet.params == lenet5.TRAINABLE_PARAMS

    assert lenet.macs == complexity_lib.analyse("lenet5", profile=False).total("macs")
    # ring: 2(N-1)/N of the bytes over the link; 1 GB at 8 Gbit/s = 1 s
    assert distributed_estimate.ring_allreduce_seconds(1e9, 2, 8.0) == pytest.approx(1.0)
    assert distributed_estimate.ring_allreduce_seconds(1e9, 4, 8.0) == pytest.approx(1.5)
    assert distributed_estimate.ring_allreduce_seconds(1e9, 1, 8.0) == 0.0
    rows = distributed_estimate.estimate_rows([vgg, conv_only], [8], link_gbps=10, device_tflops=15,
                                              batch_per_worker=32)
    assert rows[0]["efficiency"] < rows[1]["efficiency"]  # VGG19 scales worse than its conv stack alone


def test_benchmark_writes_json(tmp_path):
    report = distributed_bench.run_benchmark(["--steps", "6", "--profile-steps", "2", "--allreduce-repeats", "2",
                                        "--cases", "one,mirrored",
                                        "--logdir", str(tmp_path), "--timeout", str(WAIT)])
    data = json.loads(Path(report["path"]).read_text())
    assert data["bench"] == "distributed" and [r["case"] for r in data["rows"]] == ["one", "mirrored"]
    assert [r["replicas"] for r in data["rows"]] == [1, 2]
    assert all(r["examples_per_s"] > 0 and r["allreduce_ms"] > 0 for r in data["rows"])
    one, mirrored = data["rows"]
    assert one["traced_allreduce_ms"] == 0 < mirrored["traced_allreduce_ms"] < mirrored["traced_step_ms"]
    assert "mirrored/one" in data["ratios"]


def test_union_of_collective_intervals():
    from tfbench.parallel import profile as distributed_profile

    assert distributed_profile._union_length([(20, 25), (0, 10), (5, 15), (6, 7)]) == 20
    assert distributed_profile._union_length([]) == 0
