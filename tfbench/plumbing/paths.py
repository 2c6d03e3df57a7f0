"""Where tfbench finds the files it ships, caches what it compiles, and writes its logs.

The repository keeps the ImageNet label lists in ``datasets/`` and the C++ sources of the custom
ops in ``custom_ops/``, both at its top level; the build maps them into the wheel as the resource
folders ``tfbench/datasets`` and ``tfbench/custom_ops`` (``[tool.setuptools.package-dir]`` in
pyproject.toml).  :func:`shipped` is the one place that finds them, through ``importlib.resources``
in a wheel, and beside ``tfbench/`` in an editable install or a source tree.
"""

from __future__ import annotations

import datetime as _dt
import importlib.resources
import os
from pathlib import Path

DEFAULT_LOGDIR = Path("logs")

#: the folders tfbench ships, by their name in the repository -> the resource package the build maps them to.
#: Shipping another top-level folder: an entry here, and its ``package-dir`` line, ``packages`` entry and
#: ``package-data`` globs in pyproject.toml (tests/test_packaging.py checks the two agree).
SHIPPED = {"datasets": "tfbench.datasets", "custom_ops": "tfbench.custom_ops"}


def shipped(folder: str, *parts: str) -> Path:
    """A file or folder tfbench ships: ``shipped("datasets", "imagenet", "imagenet_class_index.json")``.

    ``folder`` is ``"datasets"`` (label lists) or ``"custom_ops"`` (C++ sources).  From a wheel it
    is the resource package the build maps the folder to (``tfbench.datasets``, ``tfbench.custom_ops``).
    An editable install or a source tree on ``PYTHONPATH`` has no such package (setuptools' editable
    finder does not resolve mapped folders without an ``__init__.py``): there it is the folder at the
    top of the tree the running ``tfbench/`` sits in.
    """
    if folder not in SHIPPED:
        raise ValueError(f"tfbench ships no folder {folder!r}; it ships {', '.join(SHIPPED)}")
    try:
        root = importlib.resources.files(SHIPPED[folder])
    except ModuleNotFoundError:  # an editable install or a source tree: the folder beside tfbench/
        return Path(__file__).resolve().parents[2].joinpath(folder, *parts)
    if not isinstance(root, Path):  # a namespace package (the folders have no __init__.py): one location
        root = next(iter(root.iterdir())).parent
    return root.joinpath(*parts)


ENV_CACHE = "TFBENCH_CACHE"
"""Environment variable that moves tfbench's per-user cache (compiled custom ops)."""


def cache_root() -> Path:
    """tfbench's per-user cache: ``$TFBENCH_CACHE``, else ``$XDG_CACHE_HOME/tfbench``, else ``~/.cache/tfbench``.

    What tfbench compiles goes here, never into the package folder (site-packages may be read-only).
    """
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "tfbench"
    return Path.home() / ".cache" / "tfbench"


def timestamp() -> str:
    """A sortable local timestamp for run folders and report names: YYYYmmdd-HHMMSS."""
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def run_dir(logdir: str | Path, experiment: str) -> Path:
    """A fresh ``<logdir>/<experiment>/<timestamp>/`` folder (suffixed if it exists already)."""
    base = Path(logdir) / experiment / timestamp()
    path, n = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{n}")
        n += 1
    path.mkdir(parents=True)
    return path
