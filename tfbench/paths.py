"""Where tfbench finds its shipped data and writes its logs.

tfbench is a workbench run from its checkout (``pip install -e .``): the label lists in
``datasets/`` and the C++ sources in ``custom_ops/`` sit beside the package.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_DIR = REPO_ROOT / "datasets"
IMAGENET_DIR = DATASETS_DIR / "imagenet"
CUSTOM_OPS_DIR = REPO_ROOT / "custom_ops"
DEFAULT_LOGDIR = Path("logs")


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
