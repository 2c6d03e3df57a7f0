"""``python -m tfbench.ops``: build the custom ops, show them, use them in a graph, fuzz them.

  build   compile every op in custom_ops/ (or --op NAME) against the installed TensorFlow (cached;
          --force rebuilds)
  list    every op: its library folder, what it needs, the backend it gets here
  info    which backend PowerDifference and TfbenchConv2D use here, their libraries, PowerDifference's
          registered interface, the vector extension the conv kernels were built for
  demo    a style-transfer residual block whose instance norm uses PowerDifference, in graph mode,
          written to TensorBoard (logs/ops/<timestamp>/)
  fuzz    random cases of PowerDifference and InstanceNorm against NumPy, or of TfbenchConv2D against
          tf.nn.conv2d (--op conv2d), on each backend; exit code 1 if any case disagrees
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tfbench.plumbing import cli, paths
from tfbench.plumbing.errors import UserError, run_cli


def _build(ns: argparse.Namespace) -> int:
    from tfbench.operators import build

    names = [ns.op] if ns.op else build.known_ops()
    for name in names:
        print(build.build(name, compiler=ns.compiler, force=ns.force))
    return 0


def _list(ns: argparse.Namespace) -> int:
    from tfbench.operators import backend as backend_rule
    from tfbench.operators import build

    for name in build.known_ops():
        needs = build.NEEDS.get(name, build.Needs())
        extra = [f"headers of custom_ops/{other}" for other in needs.headers_from]
        extra += ["TensorFlow's kernel library (libtensorflow_cc, JPEG headers)"] if needs.kernel_library else []
        print(f"{name:26s} custom_ops/{name}/  needs TensorFlow's framework{''.join(', ' + e for e in extra)}; "
              f"backend here: {backend_rule.resolve(name, ns.backend)}")
    return 0


def _info(ns: argparse.Namespace) -> int:
    import tensorflow as tf
    from tensorflow.python.framework import op_def_registry

    from tfbench.operators import build
    from tfbench.operators import power_difference as pd

    backend = pd.resolve_backend(ns.backend)
    print(f"TensorFlow {tf.__version__}; PowerDifference backend: {backend}")
    if backend == "cpp":
        print(f"library: {build.plan(pd.LIBRARY).library}")
        print("registered interface (OpDef):")
        print(op_def_registry.get(pd.OP_NAME))
    from tfbench.operators import conv2d

    backend = conv2d.resolve_backend(ns.backend)
    print(f"TfbenchConv2D backend: {backend}")
    if backend == "cpp":
        print(f"library: {build.plan(conv2d.LIBRARY).library}")
        print(f"kernels: {conv2d.schedule([1, 1, 1, 1], [1, 1, 1, 1], algorithm='loops').splitlines()[0]}")
        print(f"algorithms: {', '.join(conv2d.ALGORITHMS)}")
    return 0


def _demo(ns: argparse.Namespace) -> int:
    import numpy as np
    import skimage.data
    import tensorflow as tf

    from tfbench.operators import instance_norm as inorm
    from tfbench.operators.power_difference import resolve_backend
    from tfbench.reporting import summaries

    backend = resolve_backend(ns.backend)
    image = tf.image.resize(skimage.data.chelsea()[None].astype(np.float32) / 255.0, (ns.size, ns.size))
    block = inorm.ResidualBlock.create(channels=3, seed=0)
    target = tf.image.flip_left_right(image)
    run = paths.run_dir(ns.logdir, "ops")

    forward = tf.function(lambda x: inorm.residual_block(x, block, backend=ns.backend))
    graphs = summaries.capture_function_graphs(forward, image)
    summaries.write_graph(run / "forward_pre_grappler", graphs.pre_optimization)
    summaries.write_graph(run / "forward_post_grappler", graphs.post_optimization)
    pre, post = summaries.op_counts(graphs.pre_optimization), summaries.op_counts(graphs.post_optimization)
    print(f"backend {backend}: PowerDifference nodes before grappler {pre['PowerDifference']}, "
          f"after {post['PowerDifference']} (nodes in all: {sum(pre.values())} -> {sum(post.values())})")

    step = inorm.make_train_step(block, backend=ns.backend)
    loss = summaries.write_trace(run / "train_step", step, image, target, name="train_step")
    losses = [float(loss)] + [float(step(image, target)) for _ in range(ns.steps - 1)]
    for i, value in enumerate(losses):
        summaries.write_scalars(run / "train_step", {"loss": value}, step=i)
    summaries.write_images(run / "images", {"input": image.numpy(), "target": target.numpy(),
                                            "output": np.clip(forward(image).numpy(), 0, 1)})
    print(f"training through the registered gradient: loss {losses[0]:.4f} -> {losses[-1]:.4f} in {len(losses)} steps")
    print(f"TensorBoard: {cli.tensorboard_command(run)}  "
          "(Graphs: forward_pre_grappler, forward_post_grappler, train_step)")
    return 0


def _fuzz(ns: argparse.Namespace) -> int:
    from tfbench.operators import conv_fuzz, fuzz
    from tfbench.plumbing.files import write_json

    backends = [b.strip() for b in ns.backends.split(",") if b.strip()]
    for backend in backends:
        if backend not in ("cpp", "fallback"):
            raise UserError(f"--backends: {backend!r} is not cpp or fallback")
    summary = (conv_fuzz if ns.op == "conv2d" else fuzz).run(ns.cases, ns.seed, backends)
    reference = "tf.nn.conv2d" if ns.op == "conv2d" else "NumPy"
    failed = False
    parts = ([("TfbenchConv2D", summary)] if ns.op == "conv2d"
             else [("PowerDifference", summary), ("InstanceNorm", summary["instance_norm"])])
    for op, part in parts:
        for backend, result in part["backends"].items():
            print(f"{op} {backend:8s} cases {ns.cases}: {result['match']} matched {reference}, {result['error']} "
                  f"raised InvalidArgumentError as expected, {result['problems']} problems")
            for problem in result["first_problems"]:
                print(f"  {problem}")
            failed |= result["problems"] > 0
    if ns.json:
        write_json(Path(ns.json), summary)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the subcommand and run it."""
    parser = cli.parser("ops", __doc__.split("\n\n")[0])
    parser.epilog = __doc__.split("\n\n", 1)[1]
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="compile a custom op library (cached)", formatter_class=cli.HelpFormatter)
    cli.add_verbose(p)
    p.add_argument("--op", default=None, help="folder under custom_ops/ (default: all of them)")
    p.add_argument("--compiler", default=None, help="C++ compiler (default: $CXX, else g++/c++/clang++)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache has the library")
    p.set_defaults(run=_build)
    for name, helptext, func in (("list", "every op, its needs and the backend it gets here", _list),
                                 ("info", "which backend is used and the op's interface", _info),
                                 ("demo", "the instance-norm block in graph mode, to TensorBoard", _demo)):
        p = sub.add_parser(name, help=helptext, formatter_class=cli.HelpFormatter)
        cli.add_verbose(p)
        p.add_argument("--backend", choices=("auto", "cpp", "fallback"), default=None,
                       help="backend (default: $TFBENCH_OPS_BACKEND or auto)")
        p.set_defaults(run=func)
    cli.add_logdir(p, help="runs go to LOGDIR/ops/<timestamp>/")
    p.add_argument("--image-size", dest="size", type=cli.positive_int, default=64,
                   help="image height and width (at least 4)")
    p.add_argument("--steps", type=cli.positive_int, default=5, help="training steps")
    p = sub.add_parser("fuzz", help="random cases against NumPy", formatter_class=cli.HelpFormatter)
    cli.add_verbose(p)
    p.add_argument("--cases", type=cli.positive_int, default=1000, help="cases per backend")
    cli.add_seed(p, help="seed of the random cases")
    p.add_argument("--backends", default="cpp,fallback", help="comma-separated: cpp, fallback")
    p.add_argument("--op", choices=("power_difference", "conv2d"), default="power_difference",
                   help="the op to fuzz: PowerDifference against NumPy, or TfbenchConv2D against tf.nn.conv2d")
    p.add_argument("--json", default=None, help="also write the summary as JSON here")
    p.set_defaults(run=_fuzz)
    ns = cli.parse(parser, argv)
    if ns.command == "demo" and ns.size < 4:
        raise UserError(f"demo needs --image-size of at least 4, got {ns.size}")
    return ns.run(ns)


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
