"""``python -m tfbench.distributed data-service`` and ``consume``: one input pipeline shared by several trainers.

Part of exercise 5.3.  Decoding and preprocessing JPEGs can cost more CPU than a trainer
has; tf.data service moves that work onto separate *data workers*.  The command starts, on
127.0.0.1 and free ports:

- a ``DispatchServer`` (the dispatcher: it keeps the list of jobs and splits, and tells each
  data worker which part of the source to read),
- ``--data-workers N`` ``WorkerServer``s (each runs the registered pipeline: read the
  TFRecord shards, decode, preprocess, batch),
- ``--consumers M`` consumer processes (``consume``: trainers; each runs the single-device
  training step of its own VGG19 on every batch it receives, ``--model none`` only counts), which iterate
  ``dataset.apply(tf.data.experimental.service.distribute("distributed_epoch", service, job_name))``:
  all consumers with the same ``job_name`` share one job, and in ``distributed_epoch`` mode
  the dispatcher hands each source split (a shard file) to one data worker, so together the
  consumers receive every example exactly once per epoch.

Then it checks that claim (every file name exactly ``--epochs`` times, none missing) and prints
per-consumer counts and throughput.  This local cluster runs in a network namespace of its own
(:mod:`tfbench.parallel.netns`): no other machine reaches its ports.  To feed trainers on other
machines, run the dispatcher and workers with ``--host`` set to this machine's address, then on each trainer host::

    python -m tfbench.distributed consume --dispatcher grpc://DISPATCHER_HOST:PORT --job-name NAME --data DIR

where ``DIR`` is the same shard folder path on the data workers' machine (the pipeline's
graph, file paths included, is shipped to the data workers, which do the reading).
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tfbench.parallel import cluster
from tfbench.plumbing import paths
from tfbench.plumbing.errors import UserError
from tfbench.plumbing.files import write_json

SUMMARY_FILE = "data_service.json"
CONSUMER_LEARNING_RATE = 1e-3  # SGD learning rate of each consumer's VGG19 (momentum 0.9)


CONNECT_TIMEOUT = 30.0  # seconds a consumer waits for its dispatcher


@dataclass(frozen=True)
class Pipeline:
    """What the data workers read and make, and what each consumer trains on it: the same for every process."""

    data: str | None = None  # ImageNet TFRecord folder (None: the embedded sample)
    image_size: int = 224  # preprocessed size (VGG19 input)
    batch_size: int = 2  # batch formed on the data workers
    epochs: int = 1  # passes over the data
    model: str = "vgg19"  # what each consumer trains ("none": only receive and count)
    seed: int = 0  # weights of the consumers' models


def _records(data: str | None, logdir: str | Path):
    from tfbench.data import imagenet_val
    from tfbench.parallel import data as distributed_data

    folder = Path(data) if data is not None else imagenet_val.default_tfrecords(logdir)
    return distributed_data.open_records(folder)


def all_filenames(records: Any) -> list[str]:
    """Every example's stored file name, read from the shards (parse only, no decoding)."""
    import tensorflow as tf

    from tfbench.data import example



    ds = tf.data.TFRecordDataset(list(records.files)).map(lambda r: example.parse_example(r)["image/filename"])
    return [name.decode() for name in ds.as_numpy_iterator()]


def consume(dispatcher: str, job_name: str, pipeline: Pipeline, *, out: str | Path | None = None,
            ready_dir: str | Path | None = None, expect: int = 1,
            logdir: str | Path = paths.DEFAULT_LOGDIR) -> dict[str, Any]:
    """Iterate the shared job ``job_name`` at ``dispatcher``; return what arrived (file names in order, timings).

    ``out``: also write that as JSON; ``ready_dir``/``expect``: wait until ``expect`` consumers are
    ready before the first batch (the start barrier ``data-service`` sets).
    """
    import numpy as np

    from tfbench.parallel import data as distributed_data

    records = _records(pipeline.data, logdir)
    ds = distributed_data.service_dataset(records, dispatcher, size=pipeline.image_size,
                                          batch_size=pipeline.batch_size, job_name=job_name, epochs=pipeline.epochs)
    step = _train_step(pipeline.model, pipeline.image_size, pipeline.seed)  # built before the barrier: not timed
    losses: list[float] = []
    if ready_dir:
        wait_for_peers(Path(ready_dir), expect)
    names: list[str] = []
    shapes = set()
    start = time.perf_counter()
    first_ms = None
    batches = 0
    for images, labels, filenames in ds:
        if first_ms is None:
            first_ms = (time.perf_counter() - start) * 1e3
        batches += 1
        names += [n.decode() for n in filenames.numpy()]
        shapes.add(tuple(images.shape[1:]))
        if not np.all(np.isfinite(images.numpy())) or int(labels.numpy().min()) < 0:
            raise RuntimeError("received a batch with non-finite pixels or a negative label")
        if step is not None:
            losses.append(float(step(images, labels)[0]))
    seconds = time.perf_counter() - start
    result = {"pid": os.getpid(), "job_name": job_name, "batches": batches, "examples": len(names),
              "filenames": names, "image_shapes": sorted(list(s) for s in shapes), "seconds": seconds,
              "first_batch_ms": first_ms, "examples_per_s": len(names) / seconds if seconds > 0 else 0.0,
              "model": pipeline.model, "train_steps": len(losses), "losses": losses}
    if out:
        write_json(out, result)
    trained = f", {len(losses)} {pipeline.model} training steps" if step is not None else ""
    print(f"consumer pid {os.getpid()}: {batches} batches, {len(names)} examples{trained} in {seconds:.2f} s",
          flush=True)
    return result


def _train_step(model: str, image_size: int, seed: int):
    """The single-device training step (``tfbench.training.loops``) of a seeded VGG19, as a tf.function (None: none)."""
    if model == "none":
        return None
    import tensorflow as tf

    from tfbench import models
    from tfbench.training import loops as train

    net = models.get("vgg19", seed=seed, input_size=image_size)  # the registry checks the size
    # Not LeNet's 0.1 schedule: at batch 1 on repeated photos, VGG19 with momentum 0.9 diverged
    # with it (loss 19241 at the 5th step, then inf, in one CI run).
    optimizer = train.make_optimizer(0.9, learning_rate=CONSUMER_LEARNING_RATE)
    optimizer.build(net.trainable_variables)
    return tf.function(train.make_train_step(net, optimizer), reduce_retracing=True)


def wait_for_dispatcher(target: str, timeout: float, log: Any = print) -> None:
    """Wait until something accepts connections at the dispatcher's ``grpc://HOST:PORT``; UserError after ``timeout``.

    tf.data's own client retries an unreachable dispatcher silently for a long time; checking the
    port first lets the command say what it waits for, and give up when it said it would.
    """
    import socket

    match = re.fullmatch(r"grpc://(\[[^\]]+\]|[^:/]+):(\d+)", target)
    if not match:
        raise UserError(f"--dispatcher must look like grpc://HOST:PORT, got {target!r}")
    host, port = match.group(1).strip("[]"), int(match.group(2))
    deadline = time.monotonic() + timeout
    said = False
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, timeout)):
                return
        except OSError as err:
            problem = err.strerror or str(err)
        if time.monotonic() >= deadline:
            raise UserError(f"no tf.data service dispatcher answers at {target} ({problem}); "
                            f"gave up after {timeout:g} s (--connect-timeout)")
        if not said:
            log(f"waiting for the tf.data service dispatcher at {target} (up to {timeout:g} s)", flush=True)
            said = True
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def wait_for_peers(ready_dir: Path, expected: int, timeout: float = 300.0) -> None:
    """Start barrier: announce this consumer, wait until ``expected`` consumers have (so all join the job together)."""
    ready_dir.mkdir(parents=True, exist_ok=True)
    (ready_dir / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while len(list(ready_dir.glob("ready-*"))) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(list(ready_dir.glob('ready-*')))} of {expected} consumers started")
        time.sleep(0.1)


def check_exactly_once(expected: Sequence[str], received: Sequence[Sequence[str]], epochs: int) -> dict[str, Any]:
    """Compare what the consumers received with every example x ``epochs``: missing and repeated names."""
    want = collections.Counter({name: epochs for name in expected})
    got = collections.Counter(name for names in received for name in names)
    missing = sorted((want - got).elements())
    extra = sorted((got - want).elements())
    return {"expected": sum(want.values()), "received": sum(got.values()), "missing": missing, "extra": extra,
            "exactly_once": not missing and not extra}


def run_data_service(pipeline: Pipeline, *, data_workers: int = 2, consumers: int = 2, host: str = cluster.LOCALHOST,
                     timeout: float = 600.0, logdir: str | Path = paths.DEFAULT_LOGDIR,
                     exposed: str | None = None) -> int:
    """Start a dispatcher, ``data_workers`` data workers and ``consumers`` consumer processes; check exactly-once.

    Returns the exit code: 0 when every example arrived exactly once per epoch, 1 otherwise or
    when a consumer failed.  ``exposed``: why the servers' ports are reachable from other machines
    (printed in one line with the ports); None when the command runs in a private network.
    """
    from tfbench.parallel import data as distributed_data

    records = _records(pipeline.data, logdir)
    expected = all_filenames(records)
    run_dir = paths.run_dir(logdir, "distributed")
    service = distributed_data.start_servers(data_workers, host)
    if exposed is not None:
        from tfbench.parallel import netns

        print(netns.exposure_line(list(service.ports), exposed), flush=True)
    job = f"tfbench-{os.getpid()}-{run_dir.name}"
    print(f"dispatcher {service.target}; {data_workers} data workers; job {job!r}; "
          f"{records.num_examples} examples in {len(records.files)} shards ({records.directory})", flush=True)
    outs = [run_dir / f"consumer-{i}.json" for i in range(consumers)]
    try:
        with cluster.Supervisor() as supervisor:
            for i, out in enumerate(outs):
                args = ["consume", "--dispatcher", service.target, "--job-name", job, "--data", str(records.directory),
                        "--image-size", str(pipeline.image_size), "--batch-size", str(pipeline.batch_size),
                        "--epochs", str(pipeline.epochs), "--out", str(out), "--model", pipeline.model,
                        "--seed", str(pipeline.seed), "--ready-dir", str(run_dir / "ready"), "--expect", str(consumers)]
                child = supervisor.start(f"consumer {i}", cluster.python_module_argv("tfbench.distributed", args))
                print(f"consumer {i}: pid {child.pid}", flush=True)
            try:
                supervisor.wait(timeout=timeout)
            except cluster.ChildFailed as failed:
                print(f"error: {failed}; stopped the other consumers", file=sys.stderr, flush=True)
                return 1
    finally:
        service.stop()
    results = [json.loads(out.read_text()) for out in outs]
    check = check_exactly_once(expected, [r["filenames"] for r in results], pipeline.epochs)
    for i, r in enumerate(results):
        print(f"  consumer {i}: {r['batches']} batches, {r['examples']} examples, {r['train_steps']} training steps, "
              f"{r['examples_per_s']:.3g} examples/s, first batch after {r['first_batch_ms'] or 0:.0f} ms")
    verdict = "yes" if check["exactly_once"] else f"NO (missing {check['missing'][:5]}, repeated {check['extra'][:5]})"
    print(f"every example exactly once per epoch over {pipeline.epochs} epoch(s): {verdict} "
          f"({check['received']} received, {check['expected']} expected)")
    summary = {"dispatcher": service.target, "data_workers": data_workers, "consumers": consumers,
               "epochs": pipeline.epochs, "job_name": job, **check,
               "model": pipeline.model,
               "per_consumer": [{k: r[k] for k in ("pid", "batches", "examples", "examples_per_s", "train_steps",
                                                   "losses")} for r in results]}
    write_json(run_dir / SUMMARY_FILE, summary)
    print(f"summary: {run_dir / SUMMARY_FILE}")
    return 0 if check["exactly_once"] else 1
