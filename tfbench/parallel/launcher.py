"""The local cluster of ``train --strategy multiworker`` without ``TF_CONFIG``: one process per worker.

Part of exercise 5.3 (:mod:`tfbench.distributed`).  :func:`plan_local_cluster` picks free ports
on ``--host`` and writes one ``TF_CONFIG`` per worker (worker 0 is the chief), chooses the run
and checkpoint folders every worker shares, and makes VGG19's default TFRecords once rather than
in every worker.  :func:`run_local_cluster` starts each worker as the same command with its own
``TF_CONFIG`` (``python -m tfbench.distributed <the same arguments> --run-dir R --checkpoint-dir C``)
under a :class:`~tfbench.parallel.cluster.Supervisor`, which relays their output with a
``[worker N]`` prefix and stops them all when one fails, on a timeout, or on Ctrl-C.  Imports
no TensorFlow: the launcher starts in a fraction of a second.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from tfbench.parallel import cluster
from tfbench.plumbing import paths

COMMAND = "tfbench.distributed"  # the module every worker runs
DEFAULT_WORKERS = 2


@dataclass(frozen=True)
class LocalCluster:
    """Each worker's TF_CONFIG, the folders they share, and the data every worker reads (None: its default)."""

    configs: list[cluster.TaskConfig]
    run_dir: Path
    checkpoint_dir: Path
    data: str | None = None

    @property
    def addresses(self) -> tuple[str, ...]:
        """``host:port`` of every worker."""
        return self.configs[0].workers

    @property
    def ports(self) -> list[int]:
        """The TCP port of every worker."""
        return [int(address.rpartition(":")[2]) for address in self.addresses]

    def worker_args(self) -> list[str]:
        """What each worker gets after the command's own arguments: the shared folders and data."""
        extra = ["--run-dir", str(self.run_dir), "--checkpoint-dir", str(self.checkpoint_dir)]
        return extra + ["--data", self.data] if self.data is not None else extra


def plan_local_cluster(workers: int | None = None, host: str = cluster.LOCALHOST, *, logdir: str | Path,
                       run_dir: str | Path | None = None, checkpoint_dir: str | Path | None = None,
                       model: str = "lenet5", data: str | None = None) -> LocalCluster:
    """Free ports and TF_CONFIGs for ``workers`` (default 2) local workers; the run folder made here."""
    configs = cluster.local_tf_configs(DEFAULT_WORKERS if workers is None else workers, host)
    run = Path(run_dir) if run_dir else paths.run_dir(logdir, "distributed")
    checkpoints = Path(checkpoint_dir) if checkpoint_dir else run / "checkpoints"
    if model == "vgg19" and data is None:  # make the embedded TFRecords once, not in every worker
        from tfbench.data import imagenet_val

        data = str(imagenet_val.default_tfrecords(logdir))
    return LocalCluster(configs, run, checkpoints, data)


def run_local_cluster(plan: LocalCluster, argv: Sequence[str], *, timeout: float | None = None,
                      log: Callable[[str], None] = print) -> str | None:
    """Start every worker as ``python -m tfbench.distributed *argv`` and wait; None when all finished.

    Otherwise the one that failed (``worker N (pid P) exited with code C``); the others were
    stopped.  ``log`` gets ``worker N: pid P, TF_CONFIG ...`` as each starts.  However it ends
    (Ctrl-C included), no worker outlives the call and no scratch folder of a worker stopped
    while saving stays behind.
    """
    try:
        with cluster.Supervisor() as supervisor:
            for config in plan.configs:
                child = supervisor.start(f"worker {config.index}",
                                         cluster.python_module_argv(COMMAND, [*argv, *plan.worker_args()]),
                                         env={"TF_CONFIG": config.to_json()})
                log(f"worker {config.index}: pid {child.pid}, TF_CONFIG {config.to_json()}")
            try:
                supervisor.wait(timeout=timeout)
            except cluster.ChildFailed as failed:
                return str(failed)
    finally:  # every worker has stopped: a worker killed while saving leaves its scratch folder behind
        for scratch in plan.checkpoint_dir.glob(".worker-*"):
            shutil.rmtree(scratch, ignore_errors=True)
    return None
