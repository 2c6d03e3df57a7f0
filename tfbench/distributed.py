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
shared input pipeline is :mod:`tfbench.parallel.service`.  This module is the command on top: its
flags, the launcher of local worker processes, and the benchmark.  Rerunning ``train`` with the
same ``--checkpoint-dir`` resumes from the last saved step.  A local cluster (``--workers``,
``data-service`` on loopback) runs in a network namespace of its own (:mod:`tfbench.parallel.netns`).
See the README's *distributed* section for what TensorFlow does when a worker dies.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from tfbench.models.registry import SIZE_RULES
from tfbench.parallel import cluster, service, training
from tfbench.parallel.training import HISTORY_FILE, MODELS, STRATEGIES
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli
from tfbench.plumbing.files import write_json

DEFAULT_WORKERS = 2  # local worker processes of --strategy multiworker
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


def print_estimate(link_gbps: float, device_tflops: float = 15.0, batch_per_worker: int = 32,
                   machines: Sequence[int] = (1, 2, 4, 8, 16, 32)) -> list[dict]:
    """Print the ring all-reduce estimate table; return its rows."""
    from tfbench.parallel import estimate as est

    if link_gbps <= 0 or device_tflops <= 0 or batch_per_worker < 1 or min(machines) < 1:
        raise UserError("--link-gbps and --device-tflops must be positive, --batch-per-worker and N at least 1")
    models = [*est.vgg19_costs(), est.lenet5_cost()]
    rows = est.estimate_rows(models, list(machines), link_gbps=link_gbps, device_tflops=device_tflops,
                             batch_per_worker=batch_per_worker)
    print(est.format_estimate(rows, models, link_gbps=link_gbps, device_tflops=device_tflops,
                              batch_per_worker=batch_per_worker))
    return rows


def _parse_ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"{what} must be comma-separated positive integers, got {text!r}")
    return values


def launch_local_workers(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """Start ``--workers`` local processes of this same command, each with its own TF_CONFIG; supervise them."""
    configs = cluster.local_tf_configs(DEFAULT_WORKERS if ns.workers is None else ns.workers, ns.host)
    if getattr(ns, "exposed", None) is not None:
        from tfbench.parallel import netns

        print(netns.exposure_line([int(w.rpartition(":")[2]) for w in configs[0].workers], ns.exposed), flush=True)
    run = Path(ns.run_dir) if ns.run_dir else paths.run_dir(ns.logdir, "distributed")
    checkpoint_dir = Path(ns.checkpoint_dir) if ns.checkpoint_dir else run / "checkpoints"
    if ns.model == "vgg19" and ns.data is None:  # make the embedded TFRecords once, not in every worker
        from tfbench.data import imagenet_val

        ns.data = str(imagenet_val.default_tfrecords(ns.logdir))
    extra = ["--run-dir", str(run), "--checkpoint-dir", str(checkpoint_dir)]
    if ns.data is not None:
        extra += ["--data", ns.data]
    print(f"run: {run}  ({cli.tensorboard_command(run)})")
    print(f"cluster: {len(configs)} workers on {', '.join(configs[0].workers)}; worker 0 is the chief")
    try:
        with cluster.Supervisor() as supervisor:
            for config in configs:
                child = supervisor.start(f"worker {config.index}",
                                         cluster.python_module_argv("tfbench.distributed", [*argv, *extra]),
                                         env={"TF_CONFIG": config.to_json()})
                print(f"worker {config.index}: pid {child.pid}, TF_CONFIG {config.to_json()}", flush=True)
            try:
                supervisor.wait(timeout=ns.timeout)
            except cluster.ChildFailed as failed:
                print(f"error: {failed}; stopped the other workers. Rerun with --checkpoint-dir {checkpoint_dir} "
                      "to resume from the last checkpoint", file=sys.stderr, flush=True)
                return 1
    finally:  # every worker has stopped: a worker killed while saving leaves its scratch folder behind
        for scratch in checkpoint_dir.glob(".worker-*"):
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"all {len(configs)} workers finished; history: {run / HISTORY_FILE}")
    return 0


def command_train(ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """``train``: validate, launch local workers if asked, else train in this process."""
    if ns.checkpoint_dir:
        cli.check_output_dir(ns.checkpoint_dir, "--checkpoint-dir")
    task = None
    if ns.strategy == "multiworker":
        task = cluster.env_tf_config()
        if task is None:
            return launch_local_workers(ns, argv)
        if ns.workers is not None and ns.workers != task.num_workers and not os.environ.get(cluster.CHILD_ENV):
            raise UserError(f"--workers {ns.workers} but TF_CONFIG describes {task.num_workers} workers; "
                            "omit --workers when TF_CONFIG is set")
    elif ns.workers is not None:
        raise UserError(f"--workers is for --strategy multiworker, not {ns.strategy!r}")

    strategy = training.make_strategy(ns.strategy, ns.replicas)  # before any other TensorFlow call (device split)
    is_chief = task.is_chief if task else True
    log = (lambda msg: print(msg, flush=True)) if is_chief else (lambda msg: None)
    run = Path(ns.run_dir) if ns.run_dir else (paths.run_dir(ns.logdir, "distributed") if is_chief else None)
    if ns.checkpoint_dir:
        checkpoint_dir: Path | None = Path(ns.checkpoint_dir)
    elif run is not None:
        checkpoint_dir = run / "checkpoints"
    else:  # a non-chief worker of a user's cluster without --checkpoint-dir: it only needs scratch space
        checkpoint_dir = Path(ns.logdir) / "distributed" / "checkpoints"
    data = training.load_data(ns.model, ns.data, ns.classes, ns.logdir)
    log(f"run: {run}  ({cli.tensorboard_command(run)})")
    log(f"data: {data.source}")
    log(training.describe(strategy))
    if task is not None:
        log(f"worker {task.index} of {task.num_workers} (chief); cluster {list(task.workers)}")
    result = training.train_distributed(strategy, data, strategy_name=ns.strategy, model_name=ns.model,
                               global_batch=ns.global_batch, epochs=ns.epochs, max_steps=ns.max_steps, seed=ns.seed,
                               momentum=ns.momentum, image_size=ns.image_size, task=task, run_dir=run,
                               checkpoint_dir=checkpoint_dir, checkpoint_every=ns.checkpoint_every,
                               profile_steps=ns.profile_steps, allreduce_repeats=ns.allreduce_repeats,
                               progress=not ns.no_progress, log=log)
    if not is_chief:
        return 0
    history = result.to_json()
    history.update({"model": ns.model, "data": data.source, "strategy_description": training.describe(strategy),
                    "checkpoint_dir": str(checkpoint_dir)})
    write_json(run / HISTORY_FILE, history)
    ms, ar = result.median_step_ms, result.allreduce_ms
    last = result.losses[-1] if result.losses else float("nan")
    log(f"steps {result.start_step}..{history['final_step']}: last loss {last:.4f}; median {ms:.2f} ms/step = "
        f"{history['examples_per_s']:.3g} examples/s; all-reduce of gradient-sized tensors alone: {ar:.2f} ms")
    if result.test_accuracy == result.test_accuracy:
        log(f"test accuracy: {result.test_accuracy:.4f}")
    log(f"history: {run / HISTORY_FILE}")
    if not ns.no_estimate:
        print_estimate(ns.link_gbps)
    return 0


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
        print_estimate(ns.link_gbps, ns.device_tflops, ns.batch_per_worker, _parse_ints(ns.machines, "--machines"))
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
    import contextlib
    import io

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            ns, _ = make_parser().parse_known_args(argv)
    except SystemExit:  # a bad command line: cli.parse says what is wrong
        return None
    local = (ns.command == "train" and ns.strategy == "multiworker" and not os.environ.get("TF_CONFIG", "").strip()
             or ns.command == "data-service")
    return private_network(ns.host) if local else None


def private_network(host: str) -> str | None:
    """Before a local cluster starts: move this command into a network namespace of its own.

    Returns None when it is there (or already was), else why the cluster's ports stay reachable
    from other machines (the caller prints that with the ports).
    """
    from tfbench.parallel import netns

    if netns.in_private_network():
        return None
    if not is_loopback(host):
        return f"--host {host} is not a loopback address, so the cluster is meant to be reached from other machines"
    reason = netns.enter_private_network()
    if reason is None:
        print("network: the cluster runs in a network namespace of its own (loopback only): no other machine "
              "can reach its ports", flush=True)
    return reason


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------- benchmark


def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """``python -m tfbench.bench distributed``: examples/s and all-reduce ms for one, mirrored, multiworker.

    Each case runs in fresh processes (the CPU split and the cluster must be set up before
    TensorFlow starts): ``train --max-steps S``, then the median step time of the chief.
    """
    from tfbench import timing

    parser = cli.parser("bench distributed", "LeNet-5 training: one device vs mirrored (2 logical CPUs) "
                                             "vs multiworker (2 local processes).")
    parser.add_argument("--steps", type=cli.positive_int, default=60, help="training steps per case (at least 3)")
    parser.add_argument("--global-batch", type=cli.positive_int, default=64, help="examples per step")
    parser.add_argument("--allreduce-repeats", type=cli.non_negative_int, default=30,
                        help="all-reduces of gradient-sized tensors timed after training")
    parser.add_argument("--profile-steps", type=cli.non_negative_int, default=10,
                        help="steps traced by the profiler to split step time into all-reduce and the rest")
    parser.add_argument("--cases", default="one,mirrored,multiworker", help="comma-separated strategies")
    parser.add_argument("--timeout", type=cli.positive_float, default=600.0, help="seconds per case")
    cli.add_logdir(parser)
    cli.add_verbose(parser)
    ns = cli.parse(parser, argv)
    cases = [c.strip() for c in ns.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(STRATEGIES))
    if unknown or ns.steps < 3:
        raise UserError(f"--cases must be among {STRATEGIES} (got {unknown}) and --steps >= 3")
    rows = []
    for case in cases:
        run = paths.run_dir(ns.logdir, "distributed")
        args = ["train", "--strategy", case, "--max-steps", str(ns.steps), "--epochs", "1000",
                "--global-batch", str(ns.global_batch), "--allreduce-repeats", str(ns.allreduce_repeats),
                "--checkpoint-every", "0", "--profile-steps", str(ns.profile_steps), "--no-progress", "--no-estimate",
                "--logdir", ns.logdir,
                "--run-dir", str(run)]
        if case == "multiworker":
            args += ["--workers", "2"]
        with cluster.Supervisor() as supervisor:
            supervisor.start(case, cluster.python_module_argv("tfbench.distributed", args))
            supervisor.wait(timeout=ns.timeout)
        history = json.loads((run / HISTORY_FILE).read_text())
        times = sorted(history["step_ms"][2:])
        rows.append(timing.Timing(case=case, median_ms=history["median_step_ms"],
                                 p10_ms=timing.percentile(times, 0.1), p90_ms=timing.percentile(times, 0.9),
                                 repeats=len(times),
                                 extra={"replicas": history["replicas"], "global_batch": ns.global_batch,
                                        "examples_per_s": history["examples_per_s"],
                                        "allreduce_ms": history["allreduce_ms"],
                                        "traced_step_ms": history["profile"].get("median_step_ms"),
                                        "traced_allreduce_ms": history["profile"].get("median_allreduce_ms"),
                                        "traced_rest_ms": history["profile"].get("median_other_ms"),
                                        "final_loss": history["losses"][-1]}))
    ms = {r.case: r.median_ms for r in rows}
    ratios = {f"{c}/one": ms[c] / ms["one"] for c in ms if c != "one" and "one" in ms}
    return timing.report("distributed", rows, ratios, logdir=ns.logdir,
                        extra={"model": "lenet5", "steps": ns.steps,
                               "note": "each case in fresh processes; step time of the chief; allreduce_ms: "
                                       "gradient-shaped tensors all-reduced alone after training; traced_*: "
                                       "medians over the profiled steps, all-reduce = collective ops in the trace "
                                       "(waiting for the other replica included)"})


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
