"""Counting rules for recurrent layers (exercise 3.7: an LSTM's gates and their formulas).

A recurrent layer runs its cell once per time step; each step multiplies the step's input ``x``
(``d`` features) and the previous state ``h`` (``u`` units) by the weights of every gate:

- ``SimpleRNN``, one gate:  ``h = tanh(x W + h U + b)``;
- ``LSTM``, four gates ``i, f, g, o = act(x W + h U + b)``, then ``c = f * c + i * g`` (2
  multiplications, 1 addition per unit) and ``h = o * tanh(c)`` (1 multiplication);
- ``GRU``, three gates: ``z, r`` from ``x W + h U``, the candidate
  ``hh = tanh(x W_h + r * (h U_h))`` with ``reset_after=True`` (Keras' default, two biases) or
  ``tanh(x W_h + (r * h) U_h)`` without, then ``h = z * h + (1 - z) * hh`` (2 multiplications,
  2 additions per unit);
- ``ConvLSTM1D/2D/3D``: the LSTM with convolutions in place of the products (the input with the
  layer's padding and strides, the state with ``same`` padding);
- (``Bidirectional`` and ``TimeDistributed`` wrap another layer: their rules, in
  :mod:`tfbench.models.layer_rules`, count the wrapped layer with its own rule.)

So an ``LSTM(u)`` over ``T`` steps of ``d`` features does ``T * 4u(d + u)`` MACs, as torchinfo counts
it.  Additions follow :func:`tfbench.models.layer_rules.weighted_sums` (a sum of ``K`` products,
``K - 1`` additions, one more per bias, one to join the input and state halves of each gate).
"""

from __future__ import annotations

import math

from tfbench.models.work import Call, Work, elementwise, weighted_sums

GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}


def cell_step(kind: str, d: int, u: int, bias: bool, reset_after: bool = True) -> Work:
    """The work of one time step of a SimpleRNN, LSTM or GRU cell with ``d`` inputs and ``u`` units."""
    gates = GATES[kind]
    from_x = weighted_sums(gates * u * d, gates * u, bias)
    if kind == "GRU" and not reset_after:  # z and r from h U; the candidate from (r * h) U_h
        from_h = (weighted_sums(2 * u * u, 2 * u) + elementwise(mults=u) + weighted_sums(u * u, u))
    else:
        from_h = weighted_sums(gates * u * u, gates * u, bias and kind == "GRU")  # GRU's second bias
    join = elementwise(adds=gates * u)  # x part + h part, per gate
    if kind == "LSTM":
        state = elementwise(mults=3 * u, adds=u)  # c = f*c + i*g; h = o*tanh(c)
    elif kind == "GRU":
        state = elementwise(mults=2 * u + (u if reset_after else 0), adds=2 * u)  # r*(hU_h); z*h + (1-z)*hh
    else:
        state = Work()
    step = from_x + from_h + join + state
    step.neurons = gates * u
    return step


def recurrent(call: Call) -> Work:
    """SimpleRNN, LSTM, GRU over every time step of the input."""
    layer = call.layer
    steps, d = call.inp[0], call.inp[-1]
    cell = layer.cell
    return cell_step(type(layer).__name__, d, cell.units, cell.use_bias,
                     getattr(cell, "reset_after", True)).times(steps)


def conv_lstm(call: Call) -> Work:
    """ConvLSTM1D/2D/3D: per step, the input and the state convolved for four gates, then the LSTM's updates."""
    layer = call.layer
    cell = layer.cell
    steps, cin, f = call.inp[0], call.inp[-1], cell.filters
    kernel = math.prod(cell.kernel_size)
    out_shape = call.out[1:] if layer.return_sequences else call.out
    positions = math.prod(out_shape[:-1])
    n = positions * f
    step = (weighted_sums(4 * n * kernel * cin, 4 * n, cell.use_bias) + weighted_sums(4 * n * kernel * f, 4 * n)
            + elementwise(adds=4 * n) + elementwise(mults=3 * n, adds=n))
    step.neurons = 4 * n
    return step.times(steps)
