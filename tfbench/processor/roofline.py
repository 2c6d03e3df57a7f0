"""Exercises 6.10 and 6.13: the processor's roofline, with every simulated layer and whole network on it.

The roof of a processor file: peak = 2 x (MACs per cycle, all cores) x clock FLOP/s; bandwidth = the off-chip
link's bytes per second; the ridge = peak / bandwidth FLOP per byte.  A point is a layer (or a whole network)
compiled and simulated (:mod:`tfbench.processor.compiler`): FLOPs = 2 x MACs + other operations, bytes = what
its program moves to and from DRAM (so tiling that re-reads a tile moves the point left), performance =
FLOPs / simulated seconds.  No point can be above the roof: the simulator never computes faster than the unit
nor moves faster than the link (the tests check it).  6.13's "cycle-accurate simulator running three
networks" is the simulator itself, at the granularity of its instructions.

Run: ``python -m tfbench.dlp roofline alexnet vgg19 resnet50``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tfbench.plumbing.files import atomic_output
from tfbench.processor.compiler import Compiled
from tfbench.processor.spec import Processor


def roof(processor: Processor) -> dict[str, float]:
    """Peak FLOP/s, off-chip bytes/s and the ridge point of a processor."""
    op = f"MAC_{8 * processor.element_bytes}"
    peak = 2 * processor.peak_macs_per_cycle(op) * processor.clock
    link = processor.link_for("DRAM", "NRAM")
    bandwidth = link.bandwidth if link else float("inf")
    return {"peak_flops": peak, "bandwidth": bandwidth, "ridge": peak / bandwidth}


def points(name: str, compiled: Compiled) -> list[dict[str, Any]]:
    """One point per lowered layer and one for the whole network."""
    rows = []
    for layer in compiled.layers:
        r = layer.result
        flops = 2 * (r.ops.get("MAC_32", 0) + r.ops.get("MAC_16", 0)) + sum(
            v for k, v in r.ops.items() if not k.startswith("MAC"))
        moved = sum(v for k, v in r.bytes.items() if "DRAM" in k)
        rows.append(_point(name, layer.work.name, layer.work.kind, flops, moved, r.seconds))
    flops = sum(p["flops"] for p in rows)
    rows.append(_point(name, f"{name} (whole network)", "model", flops, compiled.dram_bytes(), compiled.seconds))
    return rows


def _point(model: str, layer: str, kind: str, flops: int, moved: int, seconds: float) -> dict[str, Any]:
    return {"model": model, "layer": layer, "kind": kind, "flops": flops, "bytes": moved, "seconds": seconds,
            "intensity": flops / moved if moved else float("inf"),
            "flops_per_s": flops / seconds if seconds else 0.0}


def plot(rows: Sequence[dict[str, Any]], limits: dict[str, float], path: Path, title: str) -> Path:
    """The roof and the points (layers small, whole networks as stars), log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    placed = [r for r in rows if r["flops"] > 0 and r["seconds"] > 0 and r["bytes"] > 0]
    peak, bw = limits["peak_flops"] / 1e9, limits["bandwidth"] / 1e9
    lo = min([r["intensity"] for r in placed] + [limits["ridge"] / 100]) / 2
    hi = max([r["intensity"] for r in placed] + [limits["ridge"] * 10]) * 2
    ai = np.logspace(np.log10(lo), np.log10(hi), 200)
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=100)
    ax.loglog(ai, np.minimum(peak, ai * bw), "k-", lw=2, label=f"roof: {peak:.0f} GFLOP/s, {bw:g} GB/s")
    ax.axvline(limits["ridge"], color="grey", lw=0.8, ls=":")
    ax.text(limits["ridge"], peak * 1.1, f" ridge {limits['ridge']:.1f} FLOP/byte", fontsize=8, color="grey")
    for i, model in enumerate(dict.fromkeys(r["model"] for r in placed)):
        mine = [r for r in placed if r["model"] == model]
        layers = [r for r in mine if r["kind"] != "model"]
        whole = [r for r in mine if r["kind"] == "model"]
        ax.scatter([r["intensity"] for r in layers], [r["flops_per_s"] / 1e9 for r in layers], s=14, alpha=0.6,
                   color=f"C{i}", label=f"{model} layers")
        ax.scatter([r["intensity"] for r in whole], [r["flops_per_s"] / 1e9 for r in whole], s=180, marker="*",
                   color=f"C{i}", edgecolor="k", label=f"{model} whole network")
    ax.set_xlabel("arithmetic intensity (FLOP per DRAM byte moved by the compiled program)")
    ax.set_ylabel("simulated GFLOP/s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
