"""One device vs mirrored vs multiworker, each timed in fresh processes: what ``bench distributed`` measures.

Part of exercise 5.3 (:mod:`tfbench.distributed`).  The CPU split of ``mirrored`` and the cluster
of ``multiworker`` must be set up before TensorFlow starts, so every case runs the command
``python -m tfbench.distributed train --max-steps S ...`` in processes of its own, under a
:class:`~tfbench.parallel.cluster.Supervisor`, and reads the chief's ``history.json``: median step
time, examples/s, all-reduce ms, and the profiler's split of a step into all-reduce and the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from tfbench import timing
from tfbench.parallel import cluster
from tfbench.parallel.training import HISTORY_FILE, STRATEGIES
from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError

COMMAND = "tfbench.distributed"
NOTE = ("each case in fresh processes; step time of the chief; allreduce_ms: gradient-shaped tensors all-reduced "
        "alone after training; traced_*: medians over the profiled steps, all-reduce = collective ops in the trace "
        "(waiting for the other replica included)")


def time_case(case: str, *, steps: int, global_batch: int, allreduce_repeats: int, profile_steps: int,
              timeout: float, logdir: str | Path) -> timing.Timing:
    """Train LeNet-5 for ``steps`` steps under strategy ``case`` in fresh processes; the chief's timings."""
    run = paths.run_dir(logdir, "distributed")
    args = ["train", "--strategy", case, "--max-steps", str(steps), "--epochs", "1000",
            "--global-batch", str(global_batch), "--allreduce-repeats", str(allreduce_repeats),
            "--checkpoint-every", "0", "--profile-steps", str(profile_steps), "--no-progress", "--no-estimate",
            "--logdir", str(logdir), "--run-dir", str(run)]
    if case == "multiworker":
        args += ["--workers", "2"]
    with cluster.Supervisor() as supervisor:
        supervisor.start(case, cluster.python_module_argv(COMMAND, args))
        supervisor.wait(timeout=timeout)
    history = json.loads((run / HISTORY_FILE).read_text())
    times = sorted(history["step_ms"][2:])
    return timing.Timing(case=case, median_ms=history["median_step_ms"],
                         p10_ms=timing.percentile(times, 0.1), p90_ms=timing.percentile(times, 0.9),
                         repeats=len(times),
                         extra={"replicas": history["replicas"], "global_batch": global_batch,
                                "examples_per_s": history["examples_per_s"],
                                "allreduce_ms": history["allreduce_ms"],
                                "traced_step_ms": history["profile"].get("median_step_ms"),
                                "traced_allreduce_ms": history["profile"].get("median_allreduce_ms"),
                                "traced_rest_ms": history["profile"].get("median_other_ms"),
                                "final_loss": history["losses"][-1]})


def compare_strategies(cases: Sequence[str] = STRATEGIES, *, steps: int = 60, global_batch: int = 64,
                       allreduce_repeats: int = 30, profile_steps: int = 10, timeout: float = 600.0,
                       logdir: str | Path = paths.DEFAULT_LOGDIR) -> dict[str, Any]:
    """Time every case, print the table and write ``<logdir>/bench/distributed-<time>.json``; return the report.

    Ratios are each case's median step time over one device's (``mirrored/one``, ``multiworker/one``).
    """
    unknown = sorted(set(cases) - set(STRATEGIES))
    if unknown or steps < 3:
        raise UserError(f"--cases must be among {STRATEGIES} (got {unknown}) and --steps >= 3")
    rows = [time_case(case, steps=steps, global_batch=global_batch, allreduce_repeats=allreduce_repeats,
                      profile_steps=profile_steps, timeout=timeout, logdir=logdir) for case in cases]
    ms = {r.case: r.median_ms for r in rows}
    ratios = {f"{c}/one": ms[c] / ms["one"] for c in ms if c != "one" and "one" in ms}
    return timing.report("distributed", rows, ratios, logdir=logdir,
                         extra={"model": "lenet5", "steps": steps, "note": NOTE})


def run_benchmark(argv: Sequence[str] | None = None) -> dict:
    """``python -m tfbench.bench distributed``: examples/s and all-reduce ms for one, mirrored, multiworker."""
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
    return compare_strategies([c.strip() for c in ns.cases.split(",") if c.strip()], steps=ns.steps,
                                             global_batch=ns.global_batch, allreduce_repeats=ns.allreduce_repeats,
                                             profile_steps=ns.profile_steps, timeout=ns.timeout, logdir=ns.logdir)
