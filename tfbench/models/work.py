"""What a counting rule gets and gives: one call's shapes and arguments, and the work of one example.

The vocabulary of :mod:`tfbench.models.layer_rules` and :mod:`tfbench.models.recurrent_rules`
(exercises 3.1, 3.2, 3.7): a :class:`Call` in, a :class:`Work` out, and :func:`weighted_sums`, the
one convention for additions every rule uses (a sum of ``K`` products: ``K`` multiplications,
``K - 1`` additions, one more for a bias).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass
class Work:
    """The arithmetic of one call for one example."""

    macs: int = 0
    mults: int = 0
    adds: int = 0
    neurons: int = 0
    pool_neurons: int = 0

    def __add__(self, other: "Work") -> "Work":
        return Work(self.macs + other.macs, self.mults + other.mults, self.adds + other.adds,
                    self.neurons + other.neurons, self.pool_neurons + other.pool_neurons)

    def times(self, n: int) -> "Work":
        """This work done ``n`` times (``n`` time steps)."""
        return Work(self.macs * n, self.mults * n, self.adds * n, self.neurons * n, self.pool_neurons * n)


def weighted_sums(products: int, outputs: int, bias: bool = False) -> Work:
    """``outputs`` sums of ``products / outputs`` products each, plus a bias each when ``bias``."""
    return Work(macs=products, mults=products, adds=products - outputs + (outputs if bias else 0), neurons=outputs)


def elementwise(mults: int = 0, adds: int = 0) -> Work:
    """Arithmetic that is not a weighted sum: scales, shifts, sums of tensors."""
    return Work(mults=mults, adds=adds)


@dataclass
class Call:
    """One call of a layer as a rule sees it: shapes without the batch dimension, arguments by name."""

    layer: Any
    ins: list[tuple[int, ...]]
    outs: list[tuple[int, ...]]
    arguments: dict[str, Any]  # the call's arguments bound to ``layer.call``'s parameters (KerasTensors)

    @property
    def inp(self) -> tuple[int, ...]:
        """The first input's shape."""
        return self.ins[0]

    @property
    def out(self) -> tuple[int, ...]:
        """The first output's shape."""
        return self.outs[0]

    @property
    def outputs(self) -> int:
        """Elements of the first output."""
        return math.prod(self.out)

    def shape_of(self, name: str) -> tuple[int, ...] | None:
        """The shape (no batch dimension) of argument ``name``, None when it was not given."""
        value = self.arguments.get(name)
        shape = getattr(value, "shape", None)
        return None if shape is None else tuple(int(d) for d in shape[1:])


def bind(layer: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by the names of ``layer.call``'s parameters (positional ones named too)."""
    try:
        bound = inspect.signature(layer.call).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return dict(kwargs)
    named = dict(bound.arguments)
    named.update(named.pop("kwargs", {}) or {})
    return named
