"""Run a program of the course's language on a processor: cycles, seconds, bytes per path, busy units, timeline.

The timing rule is the one the course's ``sync`` implies, and nothing more:

- every instruction occupies one **resource**: a ``move`` the link that carries its path, a ``compute`` the
  unit that executes its type;
- between two ``sync``\\ s (a *segment*) all resources work at the same time, each running its own
  instructions one after another in program order; a segment lasts as long as its busiest resource;
- ``sync`` waits for everything issued before it; the end of the program is a ``sync`` too.

So overlapping a transfer with a computation (double buffering) is something a program writes, by putting
them in the same segment; the simulator never reorders or overlaps across a ``sync``.

Costs, in whole cycles per instruction: a ``move`` of S bytes takes ceil(S / bytes-per-cycle of its link);
``compute T N`` takes ceil(N / (T's operations per cycle)).  With several cores a move that touches a core's
own memory (NRAM, WRAM) is made by every core, each with its own copy: on a link shared by the cores the
copies take turns (cores x S bytes), on a per-core link they go at once; ``compute`` runs on every core at
once (N operations each).  A systolic array (``array = [rows, cols]``) computes a matrix product
``compute MAC_32 M K N`` in folds: output stationary maps M to rows and N to columns,
ceil(M/rows) x ceil(N/cols) folds of K + rows + cols - 2 cycles (the pipeline fills and drains each fold,
as SCALE-Sim counts it); weight and input stationary map K and N, or K and M, in the same way, and each fold
first shifts its stationary operand in (rows more cycles).

Loops are not unrolled: :func:`simulate` summarises each block once (the work before its first ``sync``,
the segments inside, the work after its last ``sync``) and combines the summaries, so a loop of a million
iterations costs what one iteration costs.  :func:`timeline` does unroll, up to a limit, for the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tfbench.plumbing.files import atomic_output
from tfbench.processor.language import Compute, Instruction, Loop, Move, Sync
from tfbench.processor.spec import Processor, Unit, ceil_div


def _path(ins: Move) -> str:
    return f"{ins.src}->{ins.dst}"


def copies(processor: Processor, ins: Move) -> int:
    """How many copies of a move happen: one per core when it touches a core's own memory."""
    per_core = any(processor.memories[m].scope == "core" for m in (ins.src, ins.dst))
    return processor.cores if per_core else 1


def move_cycles(processor: Processor, ins: Move) -> int:
    """Cycles a move occupies its link."""
    link = processor.link_for(ins.src, ins.dst)
    assert link is not None, f"line {ins.line}: no link (run language.check first)"
    moved = ins.size * (copies(processor, ins) if link.shared else 1)
    return ceil_div(moved, processor.bytes_per_cycle(link))


def systolic_cycles(unit: Unit, m: int, k: int, n: int) -> int:
    """Cycles of an M x K by K x N product on a systolic array: folds x (stream + fill + drain)."""
    assert unit.array is not None
    rows, cols = unit.array
    if unit.dataflow == "os":  # outputs stay: M over rows, N over columns, K streams
        space, stream = (m, n), k
    elif unit.dataflow == "ws":  # weights stay: K over rows, N over columns, M streams
        space, stream = (k, n), m
    else:  # "is": inputs stay: K over rows, M over columns, N streams
        space, stream = (k, m), n
    folds = math.ceil(space[0] / rows) * math.ceil(space[1] / cols)
    preload = 0 if unit.dataflow == "os" else rows  # weights or inputs shifted into the array before a fold
    return folds * (preload + stream + rows + cols - 2)


def compute_cycles(processor: Processor, ins: Compute) -> int:
    """Cycles a compute instruction occupies its unit (on every core at once)."""
    unit = processor.unit_for(ins.op)
    assert unit is not None, f"line {ins.line}: no unit (run language.check first)"
    if ins.num == 0:
        return 0
    if unit.array is not None and ins.op.startswith("MAC"):
        m, k, n = ins.shape if ins.shape else (1, ins.num, 1)
        return systolic_cycles(unit, m, k, n)
    return ceil_div(ins.num, unit.ops[ins.op])


# --------------------------------------------------------------------------------------------- the summary


@dataclass
class Stats:
    """What a block did, whatever the overlap: bytes per path, operations per type, busy cycles per resource."""

    bytes: dict[str, int] = field(default_factory=dict)
    ops: dict[str, int] = field(default_factory=dict)
    busy: dict[str, int] = field(default_factory=dict)
    instructions: int = 0
    segments: int = 0

    def add(self, other: Stats, times: int = 1) -> None:
        for mine, theirs in ((self.bytes, other.bytes), (self.ops, other.ops), (self.busy, other.busy)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v * times
        self.instructions += other.instructions * times
        self.segments += other.segments * times


@dataclass
class Block:
    """A block's timing summary: resource work before its first sync (``lead``), the cycles of the segments it
    closes inside (``middle``), and the work after its last sync (``trail``); ``synced`` says whether it has one."""

    lead: dict[str, int] = field(default_factory=dict)
    middle: int = 0
    trail: dict[str, int] = field(default_factory=dict)
    synced: bool = False
    stats: Stats = field(default_factory=Stats)


def _plus(a: dict[str, int], b: dict[str, int], times: int = 1) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v * times
    return out


def _close(work: dict[str, int]) -> int:
    """A segment lasts as long as its busiest resource."""
    return max(work.values(), default=0)


def then(a: Block, b: Block) -> Block:
    """Block ``a`` followed by block ``b``."""
    stats = Stats()
    stats.add(a.stats)
    stats.add(b.stats)
    if not a.synced and not b.synced:
        return Block(_plus(a.lead, b.lead), 0, {}, False, stats)
    if not a.synced:
        return Block(_plus(a.lead, b.lead), b.middle, dict(b.trail), True, stats)
    if not b.synced:
        return Block(dict(a.lead), a.middle, _plus(a.trail, b.lead), True, stats)
    joined = _plus(a.trail, b.lead)
    stats.segments += 1 if joined else 0
    return Block(dict(a.lead), a.middle + _close(joined) + b.middle, dict(b.trail), True, stats)


def repeat(a: Block, n: int) -> Block:
    """Block ``a`` run ``n`` times in a row, in closed form."""
    if n == 0:
        return Block()
    stats = Stats()
    stats.add(a.stats, n)
    if not a.synced:
        return Block({k: v * n for k, v in a.lead.items()}, 0, {}, False, stats)
    joined = _plus(a.trail, a.lead)
    stats.segments += (n - 1) * (1 if joined else 0)
    return Block(dict(a.lead), a.middle + (n - 1) * (_close(joined) + a.middle), dict(a.trail), True, stats)


def resource(processor: Processor, ins: Move | Compute) -> str:
    """The name of the resource an instruction occupies: ``link:<name>`` or ``unit:<name>``."""
    if isinstance(ins, Move):
        link = processor.link_for(ins.src, ins.dst)
        return f"link:{link.name}" if link else "link:?"
    unit = processor.unit_for(ins.op)
    return f"unit:{unit.name}" if unit else "unit:?"


def summarise(program: list[Instruction], processor: Processor) -> Block:
    """The summary of a whole instruction list (loops in closed form)."""
    block = Block()
    for ins in program:
        if isinstance(ins, Loop):
            part = repeat(summarise(ins.body, processor), ins.count)
        elif isinstance(ins, Sync):
            part = Block(synced=True)
        else:
            name = resource(processor, ins)
            stats = Stats(instructions=1)
            if isinstance(ins, Move):
                cycles = move_cycles(processor, ins)
                stats.bytes[_path(ins)] = ins.size * copies(processor, ins)
            else:
                cycles = compute_cycles(processor, ins)
                stats.ops[ins.op] = ins.num * processor.cores
            stats.busy[name] = cycles
            part = Block({name: cycles}, stats=stats)
        block = then(block, part)
    return block


@dataclass
class Result:
    """A simulated run."""

    processor: str
    cycles: int
    seconds: float
    bytes: dict[str, int]  # per path "SRC->DST", all cores together
    ops: dict[str, int]  # per instruction type, all cores together
    busy: dict[str, int]  # cycles each resource worked (per core for units and per-core links)
    instructions: int  # executed, loops unrolled
    segments: int

    def busy_fraction(self) -> dict[str, float]:
        """Each resource's working cycles over the run's cycles."""
        return {k: v / self.cycles if self.cycles else 0.0 for k, v in self.busy.items()}

    def to_json(self) -> dict[str, Any]:
        return {"processor": self.processor, "cycles": self.cycles, "seconds": self.seconds, "bytes": self.bytes,
                "ops": self.ops, "busy_cycles": self.busy, "busy_fraction": self.busy_fraction(),
                "instructions": self.instructions, "segments": self.segments}


def simulate(program: list[Instruction], processor: Processor) -> Result:
    """Simulate ``program`` (already checked with :func:`tfbench.processor.language.check`) on ``processor``."""
    block = summarise(program, processor)
    if block.synced:
        cycles = _close(block.lead) + block.middle + _close(block.trail)
        segments = block.stats.segments + (1 if block.lead else 0) + (1 if block.trail else 0)
    else:
        cycles, segments = _close(block.lead), (1 if block.lead else 0)
    s = block.stats
    return Result(processor.name, cycles, cycles / processor.clock, dict(s.bytes), dict(s.ops), dict(s.busy),
                  s.instructions, segments)


# -------------------------------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class Event:
    resource: str
    start: int
    end: int
    line: int
    label: str


def timeline(program: list[Instruction], processor: Processor, limit: int = 2000) -> tuple[list[Event], bool]:
    """The first ``limit`` instructions as they run (loops unrolled); True when the program is longer."""
    events: list[Event] = []
    state = {"start": 0, "free": {}}  # segment start, and when each resource is next free

    def close() -> None:
        state["start"] = max([state["start"], *state["free"].values()])
        state["free"] = {}

    def walk(body: list[Instruction]) -> bool:
        for ins in body:
            if len(events) >= limit:
                return False
            if isinstance(ins, Loop):
                for _ in range(ins.count):
                    if not walk(ins.body):
                        return False
            elif isinstance(ins, Sync):
                close()
            else:
                name = resource(processor, ins)
                if isinstance(ins, Move):
                    cycles, label = move_cycles(processor, ins), f"move {ins.dst} {ins.src} {ins.size}"
                else:
                    cycles, label = compute_cycles(processor, ins), f"compute {ins.op} {ins.num}"
                begin = state["free"].get(name, state["start"])
                state["free"][name] = begin + cycles
                events.append(Event(name, begin, begin + cycles, ins.line, label))
        return True

    complete = walk(program)
    close()
    return events, not complete


def plot_timeline(events: list[Event], path: Any, title: str) -> Any:
    """A Gantt chart of the events, one row per resource, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({e.resource for e in events})
    fig, ax = plt.subplots(figsize=(10, 1 + 0.6 * max(1, len(names))))
    for row, name in enumerate(names):
        spans = [(e.start, e.end - e.start) for e in events if e.resource == name]
        ax.broken_barh(spans, (row - 0.35, 0.7), color="C0" if name.startswith("unit") else "C1", edgecolor="k",
                       linewidth=0.3)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("cycle")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
