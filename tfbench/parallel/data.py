"""Input for data-parallel training: who reads which examples, and a shared pipeline with tf.data service.

Part of exercise 5.3 (:mod:`tfbench.distributed`).  Three ways to split the data:

1. **Examples in memory** (the embedded digits, MNIST, ten ImageNet classes for LeNet-5):
   :func:`array_input_fn`.  Every epoch has one global order (``tfbench.training.loops.epoch_order``:
   the same permutation the single-device loops use); global step *k* trains on examples
   ``order[k*G:(k+1)*G]``.  Worker *w* of *W* reads the *w*-th contiguous slice of every global
   batch, and inside a worker the strategy hands consecutive per-replica batches to its local
   replicas.  So the examples of each step, and their gradients' sum, are the same however
   many replicas there are: this is what makes 1 and 2 replicas comparable step by step.
2. **TFRecord shards, streamed** (VGG19 on ImageNet val): :func:`tfrecord_input_fn` does
   *file-level* sharding by hand: worker *w* reads shards ``w, w+W, w+2W, ...`` (the same split
   ``tf.data``'s ``AutoShardPolicy.FILE`` makes, written out so it can be seen and tested).
   One pass over all workers' pipelines reads every example exactly once; training takes the
   same number of whole batches from every worker (collectives need every worker to step
   together), so up to a batch per worker of the larger shards is left for the next epoch.
3. **tf.data service** (:func:`start_servers`, :func:`service_dataset`): a dispatcher and data
   workers run decode + preprocess; consumers (trainers) only receive batches.  With
   ``processing_mode="distributed_epoch"`` the dispatcher hands out the *source* (here: the
   shard files) split by split, so consumers sharing a job together see each example once per epoch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from tfbench.parallel.cluster import LOCALHOST, free_ports
from tfbench.plumbing.errors import UserError
from tfbench.training import loops as train

# ----------------------------------------------------------------------------- examples in memory


def worker_slices(num_examples: int, global_batch: int, seed: int, epoch: int, worker: int,
                  num_workers: int) -> np.ndarray:
    """Example indices worker ``worker`` reads in ``epoch``: shape (steps, global_batch / num_workers)."""
    if global_batch % num_workers:
        raise UserError(f"global batch {global_batch} must be divisible by the {num_workers} workers")
    order = train.epoch_order(num_examples, global_batch, seed, epoch).reshape(-1, global_batch)
    width = global_batch // num_workers
    return order[:, worker * width:(worker + 1) * width]


def array_input_fn(x: np.ndarray, y: np.ndarray, *, global_batch: int, seed: int, epoch: int,
                   skip_steps: int = 0) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """The ``dataset_fn`` for ``strategy.distribute_datasets_from_function``: this worker's per-replica batches."""

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = context.get_per_replica_batch_size(global_batch)
        index = worker_slices(len(x), global_batch, seed, epoch, context.input_pipeline_id,
                              context.num_input_pipelines)[skip_steps:].reshape(-1)
        ds = tf.data.Dataset.from_tensor_slices((x[index], y[index]))
        return ds.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return dataset_fn


# ----------------------------------------------------------------------------- TFRecord shards


@dataclass(frozen=True)
class ShardedRecords:
    """The shards of a ``tfbench.imagenet convert`` folder, with their example counts (from the manifest)."""

    directory: Path
    files: tuple[str, ...]
    counts: tuple[int, ...]
    first_label: int  # 0 (Keras convention) or 1 (tensorflow/models)

    @property
    def num_examples(self) -> int:
        """Examples in all shards."""
        return sum(self.counts)

    def for_worker(self, worker: int, num_workers: int) -> tuple[list[str], int]:
        """File-level sharding: shards ``worker, worker + num_workers, ...`` and how many examples they hold."""
        if len(self.files) < num_workers:
            raise UserError(f"{self.directory}: {len(self.files)} shard(s) cannot be split between {num_workers} "
                            f"workers (file-level sharding); convert with --shards {num_workers} or more")
        return list(self.files[worker::num_workers]), sum(self.counts[worker::num_workers])

    def steps_per_epoch(self, num_workers: int, worker_batch: int) -> int:
        """Whole steps every worker can take: the smallest worker's examples over its batch."""
        return min(self.for_worker(w, num_workers)[1] for w in range(num_workers)) // worker_batch


def open_records(directory: str | Path) -> ShardedRecords:
    """Read and check the manifest and shards of ``directory`` (UserError naming what is wrong)."""
    from tfbench.data.manifest import Manifest

    manifest = Manifest.read(directory)
    files = manifest.shard_files(directory)
    counts = tuple(int(s["count"]) for s in manifest.shards)
    first = int(manifest.first_label)
    return ShardedRecords(Path(directory), tuple(files), counts, first)


def image_spec(size: int):
    """VGG19's input spec (Keras caffe mode) at ``size`` x ``size``."""
    from tfbench.data import preprocess

    return dataclasses.replace(preprocess.CAFFE, size=size)


def decode_fn(records: ShardedRecords, size: int, with_filenames: bool = False) -> Callable:
    """serialized Example -> (VGG19 input float32 size x size x 3, 0-based int32 label[, file name])."""
    from tfbench.data import example, preprocess

    spec = image_spec(size)

    def decode(serialized):
        features = example.parse_example(serialized)
        image = preprocess.tf_decode_recipe(features["image/encoded"], "A-aspect", size=size)
        image = preprocess.tf_normalise(image, spec, channel_order="RGB")
        label = tf.cast(features["image/class/label"] - records.first_label, tf.int32)
        return (image, label, features["image/filename"]) if with_filenames else (image, label)

    return decode


def worker_dataset(records: ShardedRecords, worker: int, num_workers: int, *, size: int,
                   with_filenames: bool = False, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """One pass over this worker's shards, decoded and preprocessed, unbatched."""
    files, count = records.for_worker(worker, num_workers)
    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8), block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle_seed is not None:
        ds = ds.shuffle(min(count, 1024), seed=shuffle_seed, reshuffle_each_iteration=False)
    return ds.map(decode_fn(records, size, with_filenames), num_parallel_calls=tf.data.AUTOTUNE)


def tfrecord_input_fn(records: ShardedRecords, *, global_batch: int, size: int, seed: int, epoch: int,
                      skip_steps: int = 0) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
    """The ``dataset_fn`` for streamed shards: file-level sharding, then per-replica batches.

    Every worker yields exactly ``steps_per_epoch * replicas_per_worker`` batches (minus the
    ``skip_steps`` already done when resuming), so all workers step together.
    """

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = context.get_per_replica_batch_size(global_batch)
        replicas = context.num_replicas_in_sync // context.num_input_pipelines
        steps = records.steps_per_epoch(context.num_input_pipelines, per_replica * replicas)
        ds = worker_dataset(records, context.input_pipeline_id, context.num_input_pipelines, size=size,
                            shuffle_seed=seed * 1_000_003 + epoch)
        ds = ds.batch(per_replica, drop_remainder=True).skip(skip_steps * replicas)
        return ds.take((steps - skip_steps) * replicas).prefetch(tf.data.AUTOTUNE)

    return dataset_fn


# ----------------------------------------------------------------------------- tf.data service


@dataclass
class DataService:
    """A running dispatcher and its workers (in this process); ``target`` is what consumers connect to."""

    dispatcher: Any
    workers: list[Any]
    target: str  # grpc://host:port
    ports: tuple[int, ...] = ()  # the dispatcher's, then each worker's

    def stop(self) -> None:
        """Stop the workers, then the dispatcher (servers also stop when this process exits)."""
        for worker in self.workers:
            worker._stop()  # noqa: SLF001 - the public API has no stop(); this is what __del__ calls
        self.dispatcher._stop()  # noqa: SLF001


def start_servers(num_workers: int, host: str = LOCALHOST) -> DataService:
    """Start a ``DispatchServer`` and ``num_workers`` ``WorkerServer``s on free ports of ``host``.

    Addresses handed out (to workers and consumers) use ``host``; note that TensorFlow's gRPC
    servers *listen* on every interface whatever address is advertised (``[::]:<port>``): the
    command runs a local cluster in a network namespace of its own (:mod:`tfbench.parallel.netns`).
    """
    if num_workers < 1:
        raise UserError(f"--data-workers must be at least 1, got {num_workers}")
    service = tf.data.experimental.service
    dispatcher_port, *worker_ports = free_ports(num_workers + 1, host)
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=dispatcher_port, protocol="grpc"))
    address = f"{host}:{dispatcher_port}"
    workers = [service.WorkerServer(service.WorkerConfig(dispatcher_address=address, worker_address=f"{host}:%port%",
                                                         port=port, protocol="grpc"))
               for port in worker_ports]
    return DataService(dispatcher, workers, f"grpc://{address}", (dispatcher_port, *worker_ports))


def service_source(records: ShardedRecords, *, size: int, batch_size: int, epochs: int = 1) -> tf.data.Dataset:
    """The pipeline the data workers run: every shard, decoded, preprocessed and batched, with file names.

    The source is the list of shard files, which ``distributed_epoch`` can split; each split is
    read by one data worker, so each example comes out once per epoch.
    """
    ds = tf.data.Dataset.from_tensor_slices(list(records.files)).repeat(epochs)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=1, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(decode_fn(records, size, with_filenames=True), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size)


def service_dataset(records: ShardedRecords, service: str, *, size: int, batch_size: int,
                    job_name: str, epochs: int = 1) -> tf.data.Dataset:
    """What a consumer iterates: the shared job ``job_name`` of ``service`` (grpc://host:port)."""
    ds = service_source(records, size=size, batch_size=batch_size, epochs=epochs)
    return ds.apply(tf.data.experimental.service.distribute(processing_mode="distributed_epoch", service=service,
                                                            job_name=job_name))
