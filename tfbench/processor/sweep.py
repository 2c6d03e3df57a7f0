"""Exercises 6.8 and 6.9: the compute unit's utilisation as it grows, at a fixed on-chip bandwidth.

6.8 feeds a DLP's buffers at 12.8 GB/s (``processors/dlp_6_8.toml``) and asks how busy its matrix unit stays
on AlexNet as the unit grows; 6.9 asks the same of scalar MACs that reuse nothing
(``processors/scalar_mac_6_9.toml``).  :func:`sweep` compiles the model for every size (the compiler retiles
for each: a bigger unit wants bigger tiles) and simulates it: utilisation = MACs / (cycles x MACs per cycle).
A unit that outgrows the bandwidth stops getting faster, and its utilisation falls as 1/size; with no
reuse (6.9) that happens at 12.8 / 8 = 1.6 MACs per cycle.

Run: ``python -m tfbench.dlp sweep alexnet`` (table, PNG, TensorBoard, JSON).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tfbench.plumbing.files import atomic_output
from tfbench.processor import compiler
from tfbench.processor.spec import Processor
from tfbench.processor.workload import Work

SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def sweep(work: list[Work], processor: Processor, sizes: Sequence[int] = SIZES) -> list[dict[str, Any]]:
    """One row per matrix-unit size: cycles, time, utilisation and the share of time in memory-bound layers."""
    rows = []
    for macs in sizes:
        p = processor.with_macs(macs)
        compiled = compiler.compile_work(work, p)
        memory_bound = sum(layer.result.cycles for layer in compiled.layers if layer.bound(p) == "memory")
        rows.append({"processor": processor.name, "macs_per_cycle": macs, "cycles": compiled.cycles,
                     "ms": compiled.seconds * 1e3, "utilisation": compiled.utilisation(),
                     "memory_bound_share": memory_bound / compiled.cycles if compiled.cycles else 0.0,
                     "dram_mb": compiled.dram_bytes() / 2 ** 20})
    return rows


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Utilisation and time against the unit's size, one line per processor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100)
    for name in dict.fromkeys(r["processor"] for r in rows):
        mine = [r for r in rows if r["processor"] == name]
        sizes = [r["macs_per_cycle"] for r in mine]
        left.semilogx(sizes, [100 * r["utilisation"] for r in mine], "o-", base=2, label=name)
        right.loglog(sizes, [r["ms"] for r in mine], "o-", base=2, label=name)
    left.set_xlabel("MACs per cycle")
    left.set_ylabel("utilisation of the matrix unit (%)")
    right.set_xlabel("MACs per cycle")
    right.set_ylabel("simulated time (ms)")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
