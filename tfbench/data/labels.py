"""ImageNet-1k class labels shipped in ``datasets/imagenet/`` (nothing is downloaded).

Class index i (0..999) is the i-th synset in sorted order: the Keras convention, and the
order of ``imagenet_class_index.json`` (the same file ``keras...decode_predictions`` fetches).
"""

from __future__ import annotations

import functools
import json

import numpy as np

from tfbench.plumbing import paths
from tfbench.plumbing.errors import UserError


@functools.lru_cache(maxsize=1)
def class_index() -> list[tuple[str, str]]:
    """``[(synset, name), ...]`` for classes 0..999, e.g. ``class_index()[281] == ("n02123045", "tabby")``."""
    path = paths.shipped("datasets", "imagenet", "imagenet_class_index.json")
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"ImageNet class index not found at {path}: {err.strerror}") from err
    return [tuple(raw[str(i)]) for i in range(len(raw))]  # type: ignore[misc]


def synsets() -> list[str]:
    """The 1,000 synsets in class-index order."""
    return [synset for synset, _ in class_index()]


def class_name(index: int) -> str:
    """Human-readable name of class ``index`` (0-based, Keras convention)."""
    return class_index()[index][1]


def top_k(probabilities: np.ndarray, k: int = 5) -> list[list[tuple[int, str, float]]]:
    """For each row of ``probabilities`` (N, 1000): the k best ``(index, name, probability)``."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_index()):
        raise UserError(f"expected scores of shape (N, {len(class_index())}), got {probabilities.shape}")
    order = np.argsort(-probabilities, axis=1)[:, :k]
    return [[(int(i), class_name(int(i)), float(row[i])) for i in best] for row, best in zip(probabilities, order)]
