"""A deep-learning processor as data: memories, the links between them, compute units, clock and cores.

Course chapters 6 and 7 describe processors by a handful of numbers (exercise 7.7: "WRAM 256 KB, NRAM
128 KB, 256 float32 multiply-accumulates per cycle, 1 GHz, 64 GB/s off chip").  A processor file says
exactly that, in TOML, and nothing more::

    name = "course 7.7: single-core DLP"
    clock_ghz = 1.0
    cores = 1

    [memories]                      # name = size (binary units: 1 KB = 1024 bytes); DRAM is off chip
    DRAM = "off-chip"
    NRAM = { size = "128KB", scope = "core" }
    WRAM = { size = "256KB", scope = "core" }

    [links.offchip]                 # one link: transfers on it take turns; different links overlap
    bandwidth = "64GB/s"            # decimal units: 64 GB/s at 1 GHz = 64 bytes per cycle
    paths = ["DRAM-NRAM", "DRAM-WRAM"]   # both directions
    shared = true                   # one link for all cores (false: every core has its own)

    [units.matrix]                  # operations per cycle, per core
    MAC_32 = 256
    MAC_16 = 512

A memory's ``scope`` is ``core`` (every core has its own: NRAM, WRAM) or ``cluster`` (one for all cores:
the SharedRAM of exercise 7.11); ``DRAM`` is off chip and unbounded.  A unit may describe a systolic array
(``array = [32, 32]``, ``dataflow = "os"``), as SCALE-Sim's configuration does; then its throughput is
rows x cols and a matrix product costs what the array's folds cost (:mod:`tfbench.processor.simulator`).
``operand_reuse = false`` describes scalar MACs (exercise 6.9): nothing lets one loaded value serve two MACs.

Shipped processors live in ``tfbench/processor/processors/*.toml``: :func:`shipped_names`, :func:`load`
takes a shipped name or a path.  Every mistake in a file is a UserError naming the file and the key.
"""

from __future__ import annotations

import importlib.resources
import math
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tfbench.plumbing.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

OP_TYPES = ("MAC", "ADD", "SUB", "MUL", "DIV")
OP_RE = re.compile(r"^(MAC|ADD|SUB|MUL|DIV)_(8|16|32)$")
DATAFLOWS = ("os", "ws", "is")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?i?B)?\s*$", re.IGNORECASE)
_BINARY = {"": 1, "B": 1, "KB": 1 << 10, "KIB": 1 << 10, "MB": 1 << 20, "MIB": 1 << 20, "GB": 1 << 30,
           "GIB": 1 << 30}
_DECIMAL = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


@dataclass(frozen=True)
class Memory:
    """One memory: its size in bytes (None: off chip, unbounded) and whether each core has its own."""

    name: str
    size: int | None
    scope: str  # "offchip", "core" or "cluster"


@dataclass(frozen=True)
class Link:
    """A connection carrying the transfers of some paths; transfers on one link take turns."""

    name: str
    bandwidth: float  # bytes per second
    paths: frozenset[frozenset[str]]
    shared: bool  # True: one link for all cores; False: each core has its own copy


@dataclass(frozen=True)
class Unit:
    """A compute unit: operations per cycle per instruction type; a systolic array has a shape and dataflow."""

    name: str
    ops: dict[str, int]
    array: tuple[int, int] | None = None
    dataflow: str | None = None


@dataclass(frozen=True)
class Processor:
    """A whole processor: memories, links, units, clock (Hz) and cores."""

    name: str
    clock: float
    cores: int
    memories: dict[str, Memory]
    links: dict[str, Link]
    units: dict[str, Unit]
    source: str = ""
    notes: str = ""
    element_bytes: int = 4
    operand_reuse: bool = True  # False: scalar MACs, every MAC fetches its own input and weight (exercise 6.9)

    def link_for(self, a: str, b: str) -> Link | None:
        """The link that carries transfers between memories ``a`` and ``b`` (either direction)."""
        pair = frozenset((a, b))
        for link in self.links.values():
            if pair in link.paths:
                return link
        return None

    def unit_for(self, op: str) -> Unit | None:
        """The unit that executes instruction type ``op`` (``MAC_32``...)."""
        for unit in self.units.values():
            if op in unit.ops:
                return unit
        return None

    def bytes_per_cycle(self, link: Link) -> float:
        """A link's bandwidth in bytes per clock cycle."""
        return link.bandwidth / self.clock

    def on_chip(self, role: str) -> Memory:
        """The memory playing ``role`` ("neurons": NRAM, "weights": WRAM, "shared": SRAM) for the compiler."""
        name = {"neurons": "NRAM", "weights": "WRAM", "shared": "SRAM"}[role]
        if name not in self.memories:
            raise UserError(f"{self.source or self.name}: the compiler needs a memory named {name}")
        return self.memories[name]

    def matrix_unit(self, op: str = "MAC_32") -> Unit:
        unit = self.unit_for(op)
        if unit is None:
            raise UserError(f"{self.source or self.name}: no unit executes {op}")
        return unit

    def peak_macs_per_cycle(self, op: str = "MAC_32") -> int:
        """The whole processor's multiply-accumulates per cycle (all cores)."""
        return self.matrix_unit(op).ops[op] * self.cores

    def with_macs(self, macs: int, op: str = "MAC_32") -> Processor:
        """The same processor with the matrix unit grown or shrunk to ``macs`` per cycle (exercise 6.8's sweep);
        the other types of that unit scale with it."""
        unit = self.matrix_unit(op)
        scale = macs / unit.ops[op]
        ops = {k: max(1, round(v * scale)) for k, v in unit.ops.items()}
        units = dict(self.units)
        units[unit.name] = replace(unit, ops=ops)
        return replace(self, units=units, name=f"{self.name} ({macs} {op}/cycle)")


def parse_size(value: Any, where: str) -> int:
    """``"128KB"`` (binary: 131072), ``"2MB"``, ``4096`` -> bytes."""
    if isinstance(value, int) and value > 0:
        return value
    m = _SIZE_RE.match(str(value)) if isinstance(value, str) else None
    if not m or (m.group(2) or "").upper() not in _BINARY:
        raise UserError(f"{where}: expected a size like 128KB, 2MB or a whole number of bytes, got {value!r}")
    size = float(m.group(1)) * _BINARY[(m.group(2) or "").upper()]
    if size <= 0 or size != int(size):
        raise UserError(f"{where}: a size must be a positive whole number of bytes, got {value!r}")
    return int(size)


def parse_bandwidth(value: Any, where: str) -> float:
    """``"64GB/s"`` (decimal: 64e9 bytes/s), ``"12.8GB/s"``, ``"1TB/s"``, ``"12.8Gb/s"`` (bits) -> bytes/s."""
    text = str(value).strip()
    m = re.match(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(B|b)/s$", text)
    if not m:
        raise UserError(f"{where}: expected a bandwidth like 64GB/s, 1TB/s or 12.8Gb/s (bits), got {value!r}")
    bw = float(m.group(1)) * _DECIMAL[(m.group(2) + "B").upper() if m.group(2) else ""]
    if m.group(3) == "b":
        bw /= 8
    if bw <= 0:
        raise UserError(f"{where}: a bandwidth must be positive, got {value!r}")
    return bw


def from_dict(data: dict[str, Any], source: str = "<processor>") -> Processor:
    """Build a :class:`Processor` from a parsed TOML table; every mistake names ``source`` and the key."""
    known = {"name", "clock_ghz", "cores", "memories", "links", "units", "notes", "element_bytes", "operand_reuse"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; a processor file has "
                        f"{', '.join(sorted(known))}")
    for key in ("clock_ghz", "memories", "links", "units"):
        if key not in data:
            raise UserError(f"{source}: missing {key!r}")
    clock = data["clock_ghz"]
    if not isinstance(clock, (int, float)) or clock <= 0:
        raise UserError(f"{source}: clock_ghz must be a positive number, got {clock!r}")
    cores = data.get("cores", 1)
    if not isinstance(cores, int) or cores < 1:
        raise UserError(f"{source}: cores must be a whole number >= 1, got {cores!r}")
    memories: dict[str, Memory] = {}
    for name, value in data["memories"].items():
        where = f"{source}: memories.{name}"
        if value == "off-chip":
            memories[name] = Memory(name, None, "offchip")
            continue
        if isinstance(value, dict):
            scope = value.get("scope", "core")
            if scope not in ("core", "cluster"):
                raise UserError(f"{where}.scope: expected core or cluster, got {scope!r}")
            memories[name] = Memory(name, parse_size(value.get("size"), f"{where}.size"), scope)
        else:
            memories[name] = Memory(name, parse_size(value, where), "core")
    links: dict[str, Link] = {}
    for name, value in data["links"].items():
        where = f"{source}: links.{name}"
        if not isinstance(value, dict) or "paths" not in value or "bandwidth" not in value:
            raise UserError(f"{where}: a link needs bandwidth and paths, got {value!r}")
        pairs = []
        for path in value["paths"]:
            ends = str(path).split("-")
            if len(ends) != 2 or any(e not in memories for e in ends):
                raise UserError(f"{where}.paths: {path!r} is not MEMORY-MEMORY with memories from "
                                f"{', '.join(memories)}")
            pairs.append(frozenset(ends))
        links[name] = Link(name, parse_bandwidth(value["bandwidth"], f"{where}.bandwidth"), frozenset(pairs),
                           bool(value.get("shared", True)))
    units: dict[str, Unit] = {}
    for name, value in data["units"].items():
        where = f"{source}: units.{name}"
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a table of OPTYPE = operations per cycle")
        ops: dict[str, int] = {}
        for op, rate in value.items():
            if op in ("array", "dataflow"):
                continue
            if not OP_RE.match(op):
                raise UserError(f"{where}: unknown instruction type {op!r}; expected MAC/ADD/SUB/MUL/DIV _8/_16/_32")
            if not isinstance(rate, int) or rate < 1:
                raise UserError(f"{where}.{op}: operations per cycle must be a whole number >= 1, got {rate!r}")
            ops[op] = rate
        array = value.get("array")
        if array is not None and (not isinstance(array, list) or len(array) != 2
                                  or not all(isinstance(d, int) and d > 0 for d in array)):
            raise UserError(f"{where}.array: expected [rows, cols], got {array!r}")
        dataflow = value.get("dataflow")
        if array is not None and dataflow not in DATAFLOWS:
            raise UserError(f"{where}.dataflow: a systolic array needs one of {', '.join(DATAFLOWS)}, got {dataflow!r}")
        units[name] = Unit(name, ops, tuple(array) if array else None, dataflow)
    return Processor(str(data.get("name", Path(source).stem)), float(clock) * 1e9, cores, memories, links, units,
                     source=source, notes=str(data.get("notes", "")), element_bytes=int(data.get("element_bytes", 4)),
                     operand_reuse=bool(data.get("operand_reuse", True)))


def shipped_names() -> list[str]:
    """The processors tfbench ships (file stems of ``tfbench/processor/processors/*.toml``)."""
    folder = importlib.resources.files("tfbench.processor") / "processors"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load(ref: str) -> Processor:
    """A shipped processor by name (``course_7_7``) or a TOML file the user wrote."""
    if ref in shipped_names():
        text = (importlib.resources.files("tfbench.processor") / "processors" / f"{ref}.toml").read_text()
        source = f"{ref}.toml"
    else:
        path = Path(ref)
        if not path.is_file():
            raise UserError(f"{ref}: no such processor file; give a .toml file or one of {', '.join(shipped_names())}")
        from tfbench.plumbing.files import read_text

        text, source = read_text(path, "processor file"), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{source}: not valid TOML: {err}") from None
    return from_dict(data, source)


def describe(p: Processor) -> str:
    """The processor in a few lines (printed before a run)."""
    mems = ", ".join(f"{m.name} {'off chip' if m.size is None else _kb(m.size)}"
                     f"{' per core' if m.scope == 'core' and p.cores > 1 else ''}" for m in p.memories.values())
    links = ", ".join(f"{link.name} {link.bandwidth / 1e9:g} GB/s ({p.bytes_per_cycle(link):g} B/cycle)"
                      for link in p.links.values())
    units = ", ".join(f"{u.name} " + " ".join(f"{k}x{v}" for k, v in u.ops.items())
                      + (f" [{u.array[0]}x{u.array[1]} {u.dataflow}]" if u.array else "") for u in p.units.values())
    return (f"{p.name}: {p.cores} core(s) at {p.clock / 1e9:g} GHz\n  memories: {mems}\n  links: {links}\n"
            f"  units (per core, per cycle): {units}")


def _kb(size: int) -> str:
    if size >= 1 << 20 and size % (1 << 20) == 0:
        return f"{size >> 20} MB"
    if size >= 1 << 10 and size % (1 << 10) == 0:
        return f"{size >> 10} KB"
    return f"{size} B"


def ceil_div(a: float, b: float) -> int:
    """Whole cycles: an instruction occupies its resource for a whole number of cycles."""
    return int(math.ceil(a / b - 1e-9))
