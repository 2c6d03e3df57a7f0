"""``python -m tfbench.bench NAME [args...]``: run one benchmark of :mod:`tfbench.benchmarks` by name.

Every benchmark follows the rules of :mod:`tfbench.timing`: warm-ups untimed, calls blocked until
their results exist, medians and round-robin ratios, the machine header first, one JSON report under
``logs/bench/<name>-<timestamp>.json``.  Each benchmark module has ``run_benchmark(argv) -> dict``,
which parses its own options (``NAME --help``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from tfbench.plumbing import cli
from tfbench.plumbing.errors import UserError, run_cli

# name -> (module with run_benchmark(argv), one-line description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "matmul": ("tfbench.benchmarks.matmul",
               "tf.matmul on every device, eager vs tf.function, GFLOP/s (ex. 4.3, 5.1, 5.2)"),
    "vgg": ("tfbench.benchmarks.vgg", "VGG19 forward: eager vs tf.function vs XLA"),
    "pipeline": ("tfbench.benchmarks.pipeline", "ImageNet TFRecord input pipeline vs decode-only vs a naive loop"),
    "lenet": ("tfbench.lenet", "LeNet-5 training step: eager vs tf.function vs fit"),
    "classic": ("tfbench.classic", "kNN prediction on the test digits: TensorFlow vs scikit-learn's brute force"),
    "ops": ("tfbench.benchmarks.ops", "PowerDifference C++ op vs composite TF vs NumPy"),
    "norms": ("tfbench.benchmarks.norms", "fused InstanceNorm and PowerDifference at the transform net's shapes"),
    "fusion": ("tfbench.fusion", "fused vs unfused ops: remapper, BN folding, XLA"),
    "mixed_precision": ("tfbench.mixed_precision", "float32 vs mixed_bfloat16 vs mixed_float16 training"),
    "distributed": ("tfbench.benchmarks.distributed", "one device vs mirrored vs multi-worker training"),
    "roofline": ("tfbench.roofline", "matmul peaks, bandwidth, layers and fusion blocks on a roofline (ex. 6.10)"),
    "counts": ("tfbench.benchmarks.counts",
               "inspect's counts vs Keras, the model's graph, closed forms, the profiler: every keras.applications"),
    "style": ("tfbench.benchmarks.style",
              "style transfer: Gatys step vs keras.applications VGG19, transform net's norms"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``python -m tfbench.bench NAME [args...]`` to NAME's ``run_benchmark``."""
    parser = argparse.ArgumentParser(
        prog=f"{cli.PROG_PREFIX}bench",
        description="Run a benchmark; each writes JSON under logs/bench/ (NAME --help: its options and defaults).",
        epilog="benchmarks:\n" + "\n".join(f"  {name:16s} {desc}" for name, (_, desc) in BENCHMARKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=list(BENCHMARKS), help="which benchmark")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for that benchmark (see NAME --help)")
    if not list(sys.argv[1:] if argv is None else argv):  # no benchmark named: say which there are
        print(f"usage: {parser.prog} NAME [ARGS ...]  (NAME --help: its options)\n\n{parser.epilog}")
        return 0
    ns = parser.parse_args(argv)
    module_name, _ = BENCHMARKS[ns.name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise UserError(f"benchmark {ns.name!r} is not built yet ({module_name} does not exist)") from err
        raise
    module.run_benchmark(ns.args)  # each parses its arguments first, then prints the machine header
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
