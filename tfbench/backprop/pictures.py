"""Save a matplotlib figure twice: as a PNG file in the run folder and as a TensorBoard image."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from tfbench.plumbing.files import atomic_output


def new_figure(columns: int = 1, rows: int = 1, size: tuple[float, float] = (5.0, 4.0)) -> tuple[Any, Any]:
    """A figure of ``rows`` x ``columns`` axes drawn off-screen (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False)


def save(figure: Any, run_dir: str | Path, name: str) -> Path:
    """Write ``figure`` as ``run_dir/name.png`` (atomically) and as the TensorBoard image ``name``; close it."""
    import matplotlib.image
    import matplotlib.pyplot as plt

    from tfbench.reporting import summaries

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    path = Path(run_dir) / f"{name}.png"
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    buffer.seek(0)
    pixels = (matplotlib.image.imread(buffer, format="png")[..., :3] * 255).round().astype(np.uint8)
    summaries.write_images(run_dir, {name: pixels})
    return path
