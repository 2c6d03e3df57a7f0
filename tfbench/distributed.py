"""Past one device: synchronous data-parallel training with ``tf.distribute``, and a shared input pipeline.

Course exercise 5.3 (single device, several devices, several machines: what runs in parallel,
what must be serial), done with TensorFlow's own engines::

    python -m tfbench.distributed train                          # one device (the baseline)
    python -m tfbench.distributed train --strategy mirrored      # 2 replicas: the CPU split in 2 logical devices
    python -m tfbench.distributed train --strategy multiworker --workers 2   # 2 local worker processes
    TF_CONFIG='{...}' python -m tfbench.distributed train --strategy multiworker   # join a real cluster
    python -m tfbench.distributed data-service --data-workers 2 --consumers 2   # tf.data service
    python -m tfbench.distributed estimate --link-gbps 10        # ring all-reduce cost on N machines
    python -m tfbench.bench distributed                          # examples/s and all-reduce ms per strategy

The training (strategies, data, the loop, checkpoints) is :mod:`tfbench.parallel.training`; the
local worker processes :mod:`tfbench.parallel.launcher`; the shared input pipeline
:mod:`tfbench.parallel.service`; the benchmark :mod:`tfbench.benchmarks.distributed`.  This
module is the command on top: its flags, and what it prints.  Rerunning ``train`` with the
same ``--checkpoint-dir`` resumes from the last saved step.  A local cluster (``--workers``,
``data-service`` on loopback) runs in a network namespace of its own (:mod:`tfbench.parallel.netns`).
See the README's *distributed* section for what TensorFlow does when a worker dies.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from typing import Any, Sequence

from tfbench.models.registry import SIZE_RULES
from tfbench.parallel import cluster, estimate, launcher, netns, service, training
from tfbench.parallel.training import HISTORY_FILE, MODELS, STRATEGIES
from tfbench.plumbing import cli
from tfbench.plumbing.errors import run_cli

DEFAULT_TIMEOUT = 3600.0


# ----------------------------------------------------------------------------- commands


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", choices=STRATEGIES, default="one", help="one device, mirrored, or multiworker")
    p.add_argument("--workers", type=cli.positive_int, default=None,
                   help="multiworker: start this many local worker processes on --host (default 2); "
                        "omit when TF_CONFIG is exported (then this process is one worker of that cluster)")
    p.add_argument("--replicas", type=cli.positive_int, default=2,
                   help="mirrored on CPU: logical devices to split the CPU into")
    p.add_argument("--host", default=cluster.LOCALHOST, help="address the local workers use (default 127.0.0.1)")
    p.add_argument("--model", choices=MODELS, default="lenet5", help="which model (from tfbench.models)")
    p.add_argument("--data", default=None, help="LeNet-5: MNIST (IDX folder or mnist.npz) or ImageNet TFRecords "
                   "(with --classes); VGG19: ImageNet TFRecords (default: the embedded sample)")
    p.add_argument("--classes", default="0-9", help="LeNet-5 on ImageNet TFRecords: the 10 classes to learn")
    cli.add_image_size(p, 224, model="vgg19", rule=SIZE_RULES["vgg19"], help="VGG19 input size")
    p.add_argument("--global-batch", type=cli.positive_int, default=64, help="examples per step over all replicas")
    p.add_argument("--epochs", type=cli.non_negative_int, default=1, help="passes over the training data")
    p.add_argument("--max-steps", type=cli.non_negative_int, default=None, help="stop after this global step")
    cli.add_seed(p)
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoints (default: <run>/checkpoints); rerun "
                   "with the same folder to resume")
    p.add_argument("--checkpoint-every", type=cli.non_negative_int, default=50,
                   help="steps between checkpoints (and at the end)")
    p.add_argument("--profile-steps", type=cli.non_negative_int, default=5,
                   help="steps traced by the profiler (0: none)")
    p.add_argument("--allreduce-repeats", type=cli.non_negative_int, default=20,
                   help="after training, time this many all-reduces of gradient-sized tensors (0: skip)")
    p.add_argument("--link-gbps", type=cli.positive_float, default=10.0,
                   help="link speed for the printed N-machine estimate")
    p.add_argument("--no-estimate", action="store_true", help="do not print the N-machine all-reduce estimate")
    p.add_argument("--timeout", type=cli.positive_float, default=DEFAULT_TIMEOUT,
                   help="multiworker launcher: stop every worker after this many seconds")
    cli.add_logdir(p)
    p.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)  # set by the launcher for its workers
    cli.add_progress(p)
    cli.add_verbose(p)


def make_parser() -> argparse.ArgumentParser:
    """``python -m tfbench.distributed`` and its subcommands."""
    parser = cli.parser("distributed", __doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_args(sub.add_parser("train", help="data-parallel training: one | mirrored | multiworker",
                                   formatter_class=cli.HelpFormatter))
    _add_service_args(sub)
    e = sub.add_parser("estimate", help="ring all-reduce time on N machines (VGG19 vs its conv stack vs LeNet-5)",
                       formatter_class=cli.HelpFormatter)
    _add_estimate_args(e)
    return parser


def _add_service_args(sub: Any) -> None:
    """Add the ``data-service`` and ``consume`` subcommands to ``python -m tfbench.distributed``."""
    d = sub.add_parser("data-service", help="dispatcher + data workers + consumers (tf.data service)",
                       formatter_class=cli.HelpFormatter)
    d.add_argument("--data-workers", type=cli.positive_int, default=2,
                   help="tf.data service workers (decode + preprocess)")
    d.add_argument("--consumers", type=cli.positive_int, default=2, help="consumer (trainer) processes sharing the job")
    d.add_argument("--host", default=cluster.LOCALHOST, help="address servers advertise")
    d.add_argument("--timeout", type=cli.positive_float, default=600.0,
                   help="stop everything after this many seconds")
    cli.add_logdir(d)
    _add_pipeline_args(d)
    c = sub.add_parser("consume", help="iterate a shared tf.data service job (a trainer's input side)",
                       formatter_class=cli.HelpFormatter)
    c.add_argument("--dispatcher", required=True, help="grpc://HOST:PORT of the dispatcher")
    c.add_argument("--connect-timeout", type=cli.positive_float, default=service.CONNECT_TIMEOUT,
                   help="seconds to wait for the dispatcher to answer before giving up")
    c.add_argument("--job-name", required=True, help="consumers with the same job name share the data")
    c.add_argument("--out", default=None, help="write what was received (file names, counts) as JSON here")
    c.add_argument("--ready-dir", default=None, help=argparse.SUPPRESS)  # start barrier set by data-service
    c.add_argument("--expect", type=cli.positive_int, default=1, help=argparse.SUPPRESS)
    _add_pipeline_args(c)


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="ImageNet TFRecord folder (default: the embedded sample)")
    cli.add_image_size(p, 224, model="vgg19", rule=SIZE_RULES["vgg19"], help="preprocessed size (VGG19 input)")
    cli.add_batch_size(p, 2, help="batch size formed on the data workers")
    p.add_argument("--epochs", type=cli.positive_int, default=1, help="passes over the data")
    p.add_argument("--model", choices=("vgg19", "none"), default="vgg19",
                   help="what each consumer trains on the batches it receives (none: only receive and count)")
    cli.add_seed(p, help="weights of the consumers' models")
    cli.add_verbose(p)


def _add_estimate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--link-gbps", type=cli.positive_float, default=10.0, help="network link speed per machine, Gbit/s")
    p.add_argument("--device-tflops", type=cli.positive_float, default=15.0,
                   help="sustained fp32 TFLOP/s per machine (15: a V100-class GPU)")
    p.add_argument("--batch-per-worker", type=cli.positive_int, default=32, help="examples per machine per step")
    p.add_argument("--machines", default="1,2,4,8,16,32", help="comma-separated N")
    cli.add_verbose(p)


def launch_local_workers(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """``train --strategy multiworker`` without TF_CONFIG: ``--workers`` local processes of this command."""
    plan = launcher.plan_local_cluster(ns.workers, ns.host, logdir=ns.logdir, run_dir=ns.run_dir,
                                       checkpoint_dir=ns.checkpoint_dir, model=ns.model, data=ns.data)
    if ns.exposed is not None:
        print(netns.exposure_line(plan.ports, ns.exposed), flush=True)
    print(f"run: {plan.run_dir}  ({cli.tensorboard_command(plan.run_dir)})")
    print(f"cluster: {len(plan.configs)} workers on {', '.join(plan.addresses)}; worker 0 is the chief")
    failed = launcher.run_local_cluster(plan, argv, timeout=ns.timeout, log=_log)
    if failed is not None:
        print(f"error: {failed}; stopped the other workers. Rerun with --checkpoint-dir {plan.checkpoint_dir} "
              "to resume from the last checkpoint", file=sys.stderr, flush=True)
        return 1
    print(f"all {len(plan.configs)} workers finished; history: {plan.run_dir / HISTORY_FILE}")
    return 0


def command_train(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """``train``: validate, launch local workers if asked, else train in this process."""
    if ns.checkpoint_dir:
        cli.check_output_dir(ns.checkpoint_dir, "--checkpoint-dir")
    if ns.strategy == "multiworker" and cluster.env_tf_config() is None:
        return launch_local_workers(ns, argv)
    task = cluster.worker_task(ns.strategy, ns.workers)
    run = training.train_worker(
        ns.strategy, replicas=ns.replicas, task=task, model=ns.model, data=ns.data, classes=ns.classes,
        logdir=ns.logdir, run_dir=ns.run_dir, checkpoint_dir=ns.checkpoint_dir, image_size=ns.image_size,
        global_batch=ns.global_batch, epochs=ns.epochs, max_steps=ns.max_steps, seed=ns.seed, momentum=ns.momentum,
        checkpoint_every=ns.checkpoint_every, profile_steps=ns.profile_steps, allreduce_repeats=ns.allreduce_repeats,
        progress=not ns.no_progress, log=_log)
    if run.history is None:  # a worker other than the chief prints nothing
        return 0
    for line in run.summary():
        _log(line)
    if not ns.no_estimate:
        print(estimate.estimate_table(ns.link_gbps))
    return 0


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``train``, ``data-service``, ``consume`` or ``estimate``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    exposed = _private_network_first(argv)  # while this process has one thread (the next two start threads)
    cluster.exit_with_parent()  # a no-op unless started by a Supervisor
    ns = cli.parse(make_parser(), argv)
    ns.exposed = exposed
    if ns.command == "train":
        return command_train(ns, argv)
    if ns.command == "estimate":
        machines = cli.comma_numbers(ns.machines, "--machines")
        print(estimate.estimate_table(ns.link_gbps, ns.device_tflops, ns.batch_per_worker, machines))
        return 0
    pipeline = service.Pipeline(data=ns.data, image_size=ns.image_size, batch_size=ns.batch_size, epochs=ns.epochs,
                                model=ns.model, seed=ns.seed)
    if ns.command == "consume":
        service.wait_for_dispatcher(ns.dispatcher, ns.connect_timeout)
        service.consume(ns.dispatcher, ns.job_name, pipeline, out=ns.out, ready_dir=ns.ready_dir, expect=ns.expect)
        return 0
    return service.run_data_service(pipeline, data_workers=ns.data_workers, consumers=ns.consumers, host=ns.host,
                                    timeout=ns.timeout, logdir=ns.logdir, exposed=ns.exposed)


def _private_network_first(argv: Sequence[str]) -> str | None:
    """For a local cluster (``train --strategy multiworker`` without TF_CONFIG, ``data-service``): enter the
    private network while this process has one thread; None when not a local cluster or when entered."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            ns, _ = make_parser().parse_known_args(argv)
    except SystemExit:  # a bad command line: cli.parse says what is wrong
        return None
    local = (ns.command == "train" and ns.strategy == "multiworker" and not os.environ.get("TF_CONFIG", "").strip()
             or ns.command == "data-service")
    if not local or netns.in_private_network():
        return None
    reason = netns.private_network(ns.host)
    if reason is None:
        print(netns.PRIVATE_LINE, flush=True)
    return reason


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
