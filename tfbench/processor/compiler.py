"""A compiler from a model's layers to programs in the course's language that fit the processor's memories.

Every convolution (and fully connected layer, a 1x1 convolution over its rows) is computed tile by tile, as
chapter 7 does by hand in exercises 7.8-7.12.  A tiling is

- ``th`` output rows, ``tn`` output channels, ``tc`` input channels per step (the input tile is the
  ``(th - 1) x stride + kh`` input rows those outputs need, all columns; the weight tile ``kh x kw x tc x tn``);
- a loop order: ``hn`` (row tiles outside, channel tiles inside: an input tile stays while every weight tile
  passes it) or ``nh`` (the other way round: a weight tile stays); input-channel tiles are innermost, their
  partial sums accumulate in NRAM and the output tile goes out once;
- one or two buffers: with two, the next step's tiles come in and the previous output goes out while the
  current step computes (the ``sync`` pattern of ``programs/ex7_9.dlp``); with one, load, compute and store
  take turns.

NRAM holds the input and output tiles, WRAM the weight tile, each times the buffers; a tiling that does not fit
is never made.  The search is small: a few hundred tilings a layer are costed from their totals (bytes per link,
compute cycles per step shape), the best few are written out and simulated, and the fastest simulated one wins,
beside the *baseline*: the layer untiled in one buffer, or, when it does not fit, the largest tiles that fit, one
buffer.  The baseline is always simulated too, so the choice is never slower than it.

Pooling, BatchNorm, residual adds and other elementwise layers stream through NRAM in chunks (two buffers when
they fit).  A processor without operand reuse (``operand_reuse = false``, exercise 6.9's scalar MACs) streams
every MAC's input and weight.  With several cores each core takes ``1/cores`` of the output channels (or of the
groups), with its own copy of the input tile.  ``weight_ratio`` and ``input_ratio`` (exercise 7.10: 1/4 and
1/2) shrink the bytes moved from DRAM; the MACs stay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from tfbench.plumbing.errors import UserError
from tfbench.processor import simulator
from tfbench.processor.language import Compute, Instruction, Loop, Move, Sync
from tfbench.processor.spec import Processor
from tfbench.processor.workload import Work

MAX_STEPS = 20000  # tilings with more steps are not considered (the program would be too long to write out)
SIMULATED = 3  # how many of the best-estimated tilings are written out and simulated


@dataclass(frozen=True)
class Tiling:
    th: int
    tn: int
    tc: int
    order: str  # "hn" or "nh"
    buffers: int  # 1 or 2

    def describe(self) -> str:
        return (f"{self.th} rows x {self.tn} out-ch x {self.tc} in-ch, order {self.order}, "
                f"{'double' if self.buffers == 2 else 'single'}-buffered")


@dataclass(frozen=True)
class Step:
    """One step of a tiled layer: what comes in, what is computed, what goes out after it."""

    load_in: int = 0
    load_w: int = 0
    shape: tuple[int, int, int] = (0, 0, 0)  # (M, K, N) of the step's matrix product
    ops: tuple[tuple[str, int], ...] = ()  # vector operations (streams)
    store: int = 0


@dataclass
class Lowered:
    """A layer's program, how it was chosen, and its simulation."""

    work: Work
    program: list[Instruction]
    result: simulator.Result
    tiling: Tiling | None = None
    footprint: dict[str, int] = field(default_factory=dict)  # bytes held at once per memory
    baseline: simulator.Result | None = None
    baseline_tiling: Tiling | None = None
    candidates: int = 0
    explanation: str = ""
    baseline_program: list[Instruction] = field(default_factory=list)

    def bound(self, processor: Processor) -> str:
        """What limits the layer: ``compute`` (the busiest resource is a unit), ``memory`` (a link), ``-`` (none)."""
        if not self.result.busy:
            return "-"
        top = max(self.result.busy, key=self.result.busy.get)
        return "compute" if top.startswith("unit:") else "memory"


# ------------------------------------------------------------------------------------------ the program


def _moves(processor: Processor, step: Step, ratios: tuple[float, float]) -> list[Instruction]:
    out: list[Instruction] = []
    if step.load_in:
        out.append(Move("NRAM", "DRAM", math.ceil(step.load_in * ratios[1]), 0))
    if step.load_w:
        out.append(Move("WRAM", "DRAM", math.ceil(step.load_w * ratios[0]), 0))
    return out


def _compute(processor: Processor, step: Step, op: str) -> list[Instruction]:
    out: list[Instruction] = []
    m, k, n = step.shape
    if m * k * n:
        out.append(Compute(op, m * k * n, 0, (m, k, n)))
    out += [Compute(name, num, 0) for name, num in step.ops if num]
    return out


def _store(step: Step | None) -> list[Instruction]:
    return [Move("DRAM", "NRAM", step.store, 0)] if step is not None and step.store else []


def segments(runs: list[tuple[int, Step]], buffers: int, processor: Processor, op: str,
             ratios: tuple[float, float] = (1.0, 1.0)) -> list[tuple[int, tuple[Instruction, ...]]]:
    """The segments (instructions up to a sync) of a run-length list of steps, run-length encoded too.

    Two buffers: segment i computes step i while step i+1 comes in and step i-1's output goes out.
    One buffer: every step is load; sync; compute; sync; store; sync."""
    out: list[tuple[int, tuple[Instruction, ...]]] = []

    def add(count: int, seg: list[Instruction]) -> None:
        if count <= 0 or not seg:
            return
        key = tuple(seg)
        if out and out[-1][1] == key:
            out[-1] = (out[-1][0] + count, key)
        else:
            out.append((count, key))

    runs = [(c, s) for c, s in runs if c > 0]
    if buffers == 1:
        for count, step in runs:
            parts = [p for p in (_moves(processor, step, ratios), _compute(processor, step, op), _store(step)) if p]
            add(count, [ins for i, p in enumerate(parts) for ins in ((Sync(0), *p) if i else p)])
        return out
    flat: list[tuple[int, Step | None, Step, Step | None]] = []  # (count, previous, this, next)
    for i, (count, step) in enumerate(runs):
        before = runs[i - 1][1] if i else None
        after = runs[i + 1][1] if i + 1 < len(runs) else None
        if count == 1:
            flat.append((1, before, step, after))
        else:
            flat.append((1, before, step, step))
            flat.append((count - 2, step, step, step))
            flat.append((1, step, step, after))
    add(1, _moves(processor, runs[0][1], ratios) if runs else [])
    for count, before, step, after in flat:
        add(count, _compute(processor, step, op) + (_moves(processor, after, ratios) if after else []) + _store(before))
    if runs:
        add(1, _store(runs[-1][1]))
    return out


def program_of(segs: list[tuple[int, tuple[Instruction, ...]]]) -> list[Instruction]:
    """Segments as instructions: each followed by a sync, a repeated one as a loop."""
    program: list[Instruction] = []
    for count, seg in segs:
        body = [*seg, Sync(0)]
        program += body if count == 1 else [Loop(count, body, 0)]
    return program


# ------------------------------------------------------------------------------------------ conv tiling


def _parts(total: int, tile: int) -> list[tuple[int, int]]:
    """(count, size) of the tiles of ``total`` in pieces of ``tile``: the full ones and the remainder."""
    full, rest = divmod(total, tile)
    return [(full, tile)] + ([(1, rest)] if rest else [])


def _in_rows(w: Work, th: int) -> int:
    return min(w.hin, (th - 1) * w.sh + w.kh)


def footprint(w: Work, t: Tiling, e: int) -> dict[str, int]:
    """Bytes a tiling holds at once: NRAM (input and output tiles), WRAM (weight tile), times the buffers."""
    return {"NRAM": t.buffers * (_in_rows(w, t.th) * w.win * t.tc + t.th * w.wo * t.tn) * e,
            "WRAM": t.buffers * w.kh * w.kw * t.tc * t.tn * e}


def fits(processor: Processor, need: dict[str, int]) -> bool:
    return all(processor.memories[m].size is None or need[m] <= processor.memories[m].size for m in need)


def conv_steps(w: Work, t: Tiling, e: int, groups: int) -> list[tuple[int, Step]]:
    """The steps of a tiled convolution in loop order, run-length encoded."""
    hs, ns, cs = _parts(w.ho, t.th), _parts(w.cout, t.tn), _parts(w.cin, t.tc)
    h_tiles = [size for count, size in hs for _ in range(count)]
    n_tiles = [size for count, size in ns for _ in range(count)]
    c_tiles = [size for count, size in cs for _ in range(count)]
    outer, inner = (h_tiles, n_tiles) if t.order == "hn" else (n_tiles, h_tiles)
    runs: list[tuple[int, Step]] = []
    last_in = last_w = None
    for g in range(groups):
        for i, a in enumerate(outer):
            for j, b in enumerate(inner):
                th, tn = (a, b) if t.order == "hn" else (b, a)
                hi, ni = (i, j) if t.order == "hn" else (j, i)
                for ci, tc in enumerate(c_tiles):
                    in_key, w_key = (g, hi, ci), (g, ni, ci)
                    step = Step(load_in=0 if in_key == last_in else _in_rows(w, th) * w.win * tc * e,
                                load_w=0 if w_key == last_w else w.kh * w.kw * tc * tn * e,
                                shape=(th * w.wo, w.kh * w.kw * tc, tn),
                                store=th * w.wo * tn * e if ci == len(c_tiles) - 1 else 0)
                    last_in, last_w = in_key, w_key
                    if runs and runs[-1][1] == step:
                        runs[-1] = (runs[-1][0] + 1, step)
                    else:
                        runs.append((1, step))
    return runs


def _estimate(w: Work, t: Tiling, processor: Processor, e: int, groups: int, op: str,
              ratios: tuple[float, float]) -> tuple[float, int, int]:
    """(estimated cycles, compute cycles, steps) of a tiling from its totals, without writing it out."""
    ht, nt, ct = math.ceil(w.ho / t.th), math.ceil(w.cout / t.tn), math.ceil(w.cin / t.tc)
    steps = groups * ht * nt * ct
    in_once = sum(c * _in_rows(w, s) for c, s in _parts(w.ho, t.th)) * w.win * w.cin * e
    w_once = w.kh * w.kw * w.cin * w.cout * e
    in_reads = 1 if ct == 1 and (t.order == "hn" or nt == 1) else nt
    w_reads = 1 if ct == 1 and (t.order == "nh" or ht == 1) else ht
    loads = groups * (in_once * in_reads * ratios[1] + w_once * w_reads * ratios[0])
    stores = groups * w.ho * w.wo * w.cout * e
    link = processor.link_for("DRAM", "NRAM")
    bpc = processor.bytes_per_cycle(link) / (processor.cores if link.shared else 1)
    move = (loads + stores) / bpc
    unit = processor.unit_for(op)
    compute = 0
    for hc, th in _parts(w.ho, t.th):
        for nc, tn in _parts(w.cout, t.tn):
            for cc, tc in _parts(w.cin, t.tc):
                ins = Compute(op, th * w.wo * w.kh * w.kw * tc * tn, 0, (th * w.wo, w.kh * w.kw * tc, tn))
                compute += hc * nc * cc * simulator.compute_cycles(processor, ins) if unit else 0
    compute *= groups
    first = (_in_rows(w, t.th) * w.win * t.tc * ratios[1] + w.kh * w.kw * t.tc * t.tn * ratios[0]) * e / bpc
    if t.buffers == 2:
        return max(compute, move) + first + t.th * w.wo * t.tn * e / bpc, compute, steps
    return compute + move, compute, steps


def _choices(total: int, extra: Iterable[int] = ()) -> list[int]:
    values = {total, *(math.ceil(total / k) for k in range(1, 9)), *extra}
    p = 1
    while p < total:
        values.add(p)
        p *= 2
    return sorted(v for v in values if 1 <= v <= total)


def _split_for_cores(w: Work, cores: int) -> list[tuple[Work, int]]:
    """(the work of one core, the groups it runs) for each part of a layer shared among the cores: the output
    channels (or the groups) evenly; the channels left over (fewer than the cores) split by input channel, or
    else by output row."""
    if cores == 1:
        return [(w, w.groups)]
    if w.groups % cores == 0 and w.cout % cores:
        return [(w, w.groups // cores)]
    whole, rest = divmod(w.cout, cores)
    parts = [(replace(w, cout=whole), w.groups)] if whole else []
    if rest:
        if w.cin % cores == 0:
            # each core sums 1/cores of the inputs of the last channels (the partial sums' addition is not modelled)
            parts.append((replace(w, cout=rest, cin=w.cin // cores), w.groups))
        elif w.ho % cores == 0:  # each core computes 1/cores of the output rows of the last channels
            rows = w.ho // cores
            parts.append((replace(w, cout=rest, ho=rows, hin=min(w.hin, (rows - 1) * w.sh + w.kh)), w.groups))
        else:
            raise UserError(f"layer {w.name}: {w.cout} output channels, {w.cin} input channels and {w.ho} output "
                            f"rows do not divide among {cores} cores; the compiler splits one of them evenly")
    return parts


def lower_conv(w: Work, processor: Processor, ratios: tuple[float, float] = (1.0, 1.0)) -> Lowered:
    """The fastest tiling of a convolution found by the search, its program and its simulation."""
    op = f"MAC_{8 * processor.element_bytes}"
    if processor.unit_for(op) is None:
        raise UserError(f"{processor.name} has no unit for {op} (layer {w.name})")
    pieces = [_search(w, part, groups, processor, ratios) for part, groups in _split_for_cores(w, processor.cores)]
    if len(pieces) == 1:
        return pieces[0]
    program = [ins for piece in pieces for ins in piece.program]
    base = [ins for piece in pieces for ins in piece.baseline_program]
    need = {m: max(piece.footprint.get(m, 0) for piece in pieces) for m in ("NRAM", "WRAM")}
    return Lowered(w, program, simulator.simulate(program, processor), pieces[0].tiling, need,
                   simulator.simulate(base, processor), pieces[0].baseline_tiling,
                   sum(piece.candidates for piece in pieces), " + ".join(piece.explanation for piece in pieces),
                   base)


def _search(w: Work, part: Work, groups: int, processor: Processor, ratios: tuple[float, float]) -> Lowered:
    """The search for one core's part of a layer (``groups`` groups of ``part``)."""
    e = processor.element_bytes
    op = f"MAC_{8 * e}"
    unit = processor.unit_for(op)
    cols = unit.array[1] if unit.array else 1
    rows = unit.array[0] if unit.array else 1
    th_values = _choices(part.ho, [max(1, rows * k // part.wo) for k in (1, 2, 4, 8)])
    tn_values = _choices(part.cout, [cols * k for k in (1, 2, 4, 8)])
    tc_values = sorted({part.cin, *[max(1, part.cin // 2 ** k) for k in range(1, 10)]})
    candidates: list[tuple[int, int, int, Tiling]] = []
    for buffers in (2, 1):
        for order in ("hn", "nh"):
            for tc in tc_values:
                for th in th_values:
                    fitting = [tn for tn in reversed(tn_values)
                               if fits(processor, footprint(part, Tiling(th, tn, tc, order, buffers), e))]
                    # the widest weight tile that fits, and the widest that fills whole array columns / powers of 2
                    keep = {fitting[0]} if fitting else set()
                    if fitting:
                        keep.add(next((tn for tn in fitting if tn % cols == 0), fitting[0]))
                        keep.add(next((tn for tn in fitting if tn & (tn - 1) == 0), fitting[0]))
                    for tn in keep:
                        t = Tiling(th, tn, tc, order, buffers)
                        cycles, busy, steps = _estimate(part, t, processor, e, groups, op, ratios)
                        if steps <= MAX_STEPS:  # within 1% in time: the least computing, then the fewest steps
                            candidates.append((round(math.log(max(cycles, 1)) * 100), busy, steps, t))
    baseline_t = _baseline(part, processor, e)
    if baseline_t is None:
        raise UserError(f"layer {w.name}: not even one output row of one channel fits {processor.name}'s memories "
                        f"(input row {part.kh} x {part.win} x 1, NRAM "
                        f"{processor.memories['NRAM'].size} bytes, WRAM {processor.memories['WRAM'].size} bytes)")
    candidates.sort(key=lambda c: c[:3])
    tried = [t for *_, t in candidates[:SIMULATED]]
    if baseline_t not in tried:
        tried.append(baseline_t)
    best: Lowered | None = None
    base_result = None
    for t in tried:
        program = program_of(segments(conv_steps(part, t, e, groups), t.buffers, processor, op, ratios))
        result = simulator.simulate(program, processor)
        if t == baseline_t:
            base_result, base_program = result, program
        if best is None or _rank(result) < _rank(best.result):
            best = Lowered(w, program, result, t, footprint(part, t, e))
    assert best is not None and base_result is not None
    if base_result.cycles < best.result.cycles:  # never slower than the baseline
        best = Lowered(w, base_program, base_result, baseline_t, footprint(part, baseline_t, e))
    best.baseline, best.baseline_tiling, best.candidates = base_result, baseline_t, len(candidates)
    best.baseline_program = base_program
    best.explanation = (f"{best.tiling.describe()}: {best.result.cycles} cycles, the fastest of {len(tried)} simulated "
                        f"(best estimates of {len(candidates)} tilings that fit); baseline "
                        f"{baseline_t.describe()}: {base_result.cycles} cycles")
    return best


def _rank(result: simulator.Result) -> tuple[int, int]:
    """Simulated tilings compared: time to within 0.5%, then the fewest cycles the units compute (a
    memory-bound layer can take many tilings in the same time; the one that keeps the units least busy wastes
    the least, e.g. folds of a systolic array)."""
    units = sum(v for k, v in result.busy.items() if k.startswith("unit:"))
    return round(math.log(max(result.cycles, 1)) * 200), units


def _baseline(w: Work, processor: Processor, e: int) -> Tiling | None:
    """The layer untiled in one buffer, or the largest tiles that fit: rows first, then channels."""
    for tc in sorted({w.cin, *[max(1, w.cin // 2 ** k) for k in range(1, 12)]}, reverse=True):
        for tn in sorted({w.cout, *[max(1, w.cout // 2 ** k) for k in range(1, 12)]}, reverse=True):
            for th in range(w.ho, 0, -1):
                t = Tiling(th, tn, tc, "hn", 1)
                if fits(processor, footprint(w, t, e)):
                    return t
    return None


# ------------------------------------------------------------------------------------------ streams


def _even(total: int, steps: int) -> tuple[int, int]:
    """(size of each of the first steps - 1, size of the last) splitting ``total`` into ``steps``."""
    first = math.ceil(total / steps)
    return first, total - first * (steps - 1)


def stream_runs(total_in: int, total_out: int, ops: dict[str, int], w_total: int, steps: int,
                macs: int) -> list[tuple[int, Step]]:
    """``steps`` equal steps (the last one takes the remainder) of a streamed layer."""
    pieces = {"in": _even(total_in, steps), "out": _even(total_out, steps), "w": _even(w_total, steps),
              "mac": _even(macs, steps), **{k: _even(v, steps) for k, v in ops.items()}}
    if any(last < 0 for _, last in pieces.values()):  # more steps than units of something: fewer, larger steps
        return stream_runs(total_in, total_out, ops, w_total, max(1, steps // 2), macs)

    def step(i: int) -> Step:
        return Step(load_in=pieces["in"][i], load_w=pieces["w"][i],
                    shape=(1, pieces["mac"][i], 1) if macs else (0, 0, 0),
                    ops=tuple((k, pieces[k][i]) for k in ops), store=pieces["out"][i])

    runs = [(steps - 1, step(0)), (1, step(1))]
    return [(c, s) for c, s in runs if c]


def lower_stream(w: Work, processor: Processor, ratios: tuple[float, float] = (1.0, 1.0)) -> Lowered:
    """An elementwise or pooling layer streamed through NRAM, in as few chunks as fit (two buffers if they fit)."""
    e = processor.element_bytes
    nram = processor.on_chip("neurons").size or 1 << 40
    for op in w.ops:
        if processor.unit_for(op) is None:
            raise UserError(f"{processor.name} has no unit for {op} (layer {w.name} needs it)")
    per_core_in, per_core_out = math.ceil(w.in_elements / processor.cores), math.ceil(w.out_elements / processor.cores)
    for buffers in (2, 1):
        steps = max(1, math.ceil(buffers * (per_core_in + per_core_out) * e / nram))
        while buffers * (math.ceil(per_core_in / steps) + math.ceil(per_core_out / steps)) * e > nram:
            steps += 1
        chunk = buffers * (math.ceil(per_core_in / steps) + math.ceil(per_core_out / steps)) * e
        if steps <= per_core_out or buffers == 1:
            break
    per_core_ops = {k: math.ceil(v / processor.cores) for k, v in w.ops.items()}
    runs = stream_runs(per_core_in * e, per_core_out * e, per_core_ops, 0, steps, 0)
    program = program_of(segments(runs, buffers, processor, "MAC_32", (1.0, ratios[1])))
    result = simulator.simulate(program, processor)
    return Lowered(w, program, result, None, {"NRAM": chunk}, result, None, 1,
                   f"streamed in {steps} chunk(s), {'double' if buffers == 2 else 'single'}-buffered")


def lower_scalar(w: Work, processor: Processor, ratios: tuple[float, float] = (1.0, 1.0)) -> Lowered:
    """Scalar MACs (no operand reuse): every MAC's input and weight streamed in, chunks as large as the memories."""
    e = processor.element_bytes
    op = f"MAC_{8 * e}"
    nram, wram = processor.on_chip("neurons").size, processor.on_chip("weights").size
    out_bytes = w.groups * w.ho * w.wo * w.cout * e
    macs = math.ceil(w.macs / processor.cores)
    chunk = min(nram // (2 * e), wram // (2 * e))  # MACs per step, two buffers of operands
    steps = max(1, math.ceil(macs / chunk))
    runs = stream_runs(macs * e, math.ceil(out_bytes / processor.cores), {}, macs * e, steps, macs)
    program = program_of(segments(runs, 2, processor, op, ratios))
    result = simulator.simulate(program, processor)
    return Lowered(w, program, result, None, {"NRAM": 2 * chunk * e, "WRAM": 2 * chunk * e}, result, None, 1,
                   f"scalar MACs: {steps} steps of {chunk} MACs, each streaming its input and weight")


def lower(w: Work, processor: Processor, ratios: tuple[float, float] = (1.0, 1.0)) -> Lowered | None:
    """A work item's program (None for layers with no arithmetic or no counting rule)."""
    if w.lowering == "conv":
        if not processor.operand_reuse:
            return lower_scalar(w, processor, ratios)
        return lower_conv(w, processor, ratios)
    if w.lowering == "stream":
        return lower_stream(w, processor, ratios)
    return None


@dataclass
class Compiled:
    """A whole model on a processor."""

    processor: Processor
    layers: list[Lowered]
    skipped: list[Work]  # no arithmetic (fused or free) or no counting rule

    @property
    def cycles(self) -> int:
        return sum(layer.result.cycles for layer in self.layers)

    @property
    def seconds(self) -> float:
        return self.cycles / self.processor.clock

    @property
    def macs(self) -> int:
        return sum(layer.result.ops.get("MAC_32", 0) + layer.result.ops.get("MAC_16", 0) for layer in self.layers)

    def utilisation(self) -> float:
        """MACs done over what the matrix units could have done in the simulated time."""
        peak = self.processor.peak_macs_per_cycle(f"MAC_{8 * self.processor.element_bytes}")
        return self.macs / (self.cycles * peak) if self.cycles else 0.0

    def dram_bytes(self) -> int:
        return sum(v for layer in self.layers for k, v in layer.result.bytes.items() if "DRAM" in k)

    def program(self) -> list[Instruction]:
        return [ins for layer in self.layers for ins in layer.program]


def compile_work(work: list[Work], processor: Processor, ratios: tuple[float, float] = (1.0, 1.0)) -> Compiled:
    """Lower every work item; the whole network's program is the layers' programs one after another."""
    for name in ("NRAM", "WRAM"):
        if name not in processor.memories:
            raise UserError(f"{processor.source or processor.name}: the compiler needs memories NRAM and WRAM")
    if processor.link_for("DRAM", "NRAM") is None or processor.link_for("DRAM", "WRAM") is None:
        raise UserError(f"{processor.source or processor.name}: the compiler needs paths DRAM-NRAM and DRAM-WRAM")
    lowered, skipped = [], []
    for w in work:
        done = lower(w, processor, ratios)
        if done is None:
            skipped.append(w)
        else:
            lowered.append(done)
    return Compiled(processor, lowered, skipped)


def table_rows(compiled: Compiled) -> list[dict[str, Any]]:
    """One row per lowered layer: cycles, share, bound, utilisation, bytes, tiling."""
    p = compiled.processor
    peak = p.peak_macs_per_cycle(f"MAC_{8 * p.element_bytes}")
    total = compiled.cycles or 1
    rows = []
    for layer in compiled.layers:
        r = layer.result
        macs = r.ops.get("MAC_32", 0) + r.ops.get("MAC_16", 0)
        rows.append({"layer": layer.work.name, "kind": layer.work.kind, "macs": macs, "cycles": r.cycles,
                     "us": r.seconds * 1e6, "share": r.cycles / total, "bound": layer.bound(p),
                     "utilisation": macs / (r.cycles * peak) if r.cycles else 0.0,
                     "dram_kb": sum(v for k, v in r.bytes.items() if "DRAM" in k) / 1024,
                     "baseline_cycles": layer.baseline.cycles if layer.baseline else r.cycles,
                     "choice": layer.explanation})
    return rows
