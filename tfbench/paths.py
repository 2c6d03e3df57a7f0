"""Where tfbench finds the files it ships and writes its logs.

The repository keeps the ImageNet label lists in ``datasets/`` and the C++ sources of the custom
ops in ``custom_ops/``, both at its top level; the build maps them into the wheel as the resource
folders ``tfbench/datasets`` and ``tfbench/custom_ops`` (``[tool.setuptools.package-dir]`` in
pyproject.toml).  :func:`shipped` is the one place that finds them, through ``importlib.resources``:
from a wheel, an editable install, or a source tree run in place.
"""

from __future__ import annotations

import datetime as _dt
import importlib.resources
from pathlib import Path

DEFAULT_LOGDIR = Path("logs")

#: the folders tfbench ships, by their name in the repository -> the resource package the build maps them to
SHIPPED = {"datasets": "tfbench.datasets", "custom_ops": "tfbench.custom_ops"}


def shipped(folder: str, *parts: str) -> Path:
    """A file or folder tfbench ships: ``shipped("datasets", "imagenet", "imagenet_class_index.json")``.

    ``folder`` is ``"datasets"`` (label lists) or ``"custom_ops"`` (C++ sources).  Installed (wheel or
    editable), the folder is the resource package the build maps it to.  A source tree that was
    never installed with that mapping (``PYTHONPATH=.``) has no such package: there the folder is the
    one at the top of the tree, beside ``tfbench/``.
    """
    if folder not in SHIPPED:
        raise ValueError(f"tfbench ships no folder {folder!r}; it ships {', '.join(SHIPPED)}")
    try:
        root = importlib.resources.files(SHIPPED[folder])
    except ModuleNotFoundError:  # a source tree run in place
        return Path(__file__).resolve().parent.parent.joinpath(folder, *parts)
    if not isinstance(root, Path):  # a namespace package (the folders have no __init__.py): one location
        root = next(iter(root.iterdir())).parent
    return root.joinpath(*parts)


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
