"""Exercise 6.2: Amdahl's law on a real network: the speed-up when only some layer types get faster.

6.2 asks for AlexNet's speed-up when its convolutions run 10x faster and its fully connected layers 2x: the
answer is ``1 / sum(share_k / factor_k)`` over the layer types k, and everything depends on the shares.
:func:`shares` gives them three ways, shown side by side:

- **MACs**: tfbench's count (:mod:`tfbench.models.counting`); layers without MACs have no share;
- **measured**: each layer timed alone on this CPU (``tfbench.inspection.roofline.layer_points``, median
  of the rounds), the honest answer for this machine, where pooling and the activations take time too;
- **simulated**: the per-layer time on a processor file, from the compiler and simulator.

Run: ``python -m tfbench.dlp amdahl alexnet --faster conv=10,fc=2``.
"""

from __future__ import annotations

from typing import Any

from tfbench.plumbing.errors import UserError

KINDS = ("conv", "fc", "other")


def kind_of(layer_kind: str) -> str:
    """The layer type of 6.2: ``conv`` (any convolution), ``fc`` (Dense, EinsumDense) or ``other``."""
    if "Conv" in layer_kind:
        return "conv"
    if layer_kind in ("Dense", "EinsumDense"):
        return "fc"
    return "other"


def group(per_layer: dict[str, tuple[str, float]]) -> dict[str, float]:
    """{layer: (keras kind, amount)} -> the share of each 6.2 type in the total."""
    sums = {k: 0.0 for k in KINDS}
    for kind, amount in per_layer.values():
        sums[kind_of(kind)] += amount
    total = sum(sums.values())
    return {k: v / total if total else 0.0 for k, v in sums.items()}


def speedup(shares: dict[str, float], faster: dict[str, float]) -> float:
    """Amdahl: 1 / sum(share / factor); types not named in ``faster`` keep their time."""
    return 1.0 / sum(share / faster.get(kind, 1.0) for kind, share in shares.items())


def parse_faster(text: str) -> dict[str, float]:
    """``"conv=10,fc=2"`` -> ``{"conv": 10.0, "fc": 2.0}``."""
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, _, value = item.partition("=")
        try:
            factor = float(value)
        except ValueError:
            factor = 0.0
        if kind not in KINDS or factor <= 0:
            raise UserError(f"--faster: expected TYPE=FACTOR with TYPE one of {', '.join(KINDS)} and FACTOR > 0, "
                            f"like conv=10,fc=2; got {item!r}")
        out[kind] = factor
    return out


def measured(model: Any, name: str, *, repeats: int = 3) -> dict[str, tuple[str, float]]:
    """Each layer's median time (ms) on this CPU at batch 1, timed alone, all layers round robin."""
    from tfbench.inspection.roofline import layer_points

    return {p.name: (p.kind, p.median_ms) for p in layer_points(name, model, 1, warmup=1, repeats=repeats)}


def table(shares_by_source: dict[str, dict[str, float]], faster: dict[str, float]) -> list[dict[str, Any]]:
    """One row per source of shares: the shares and the speed-up they give."""
    return [{"shares from": source, **{f"{k} share": v for k, v in shares.items()},
             "speed-up": speedup(shares, faster)} for source, shares in shares_by_source.items()]
