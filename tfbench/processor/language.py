"""The course's instruction language for the deep-learning processor (exercise 7.7), parsed and checked.

Four instructions, one per line (``#`` starts a comment)::

    move DST SRC SIZE      # copy SIZE bytes from memory SRC to memory DST (DRAM, NRAM, WRAM, SRAM, ...)
    compute TYPE NUM       # NUM operations of TYPE: MAC_32, MAC_16, ADD_32, ADD_16, SUB_*, MUL_*, DIV_*
    loop N                 # repeat the lines up to the matching endloop N times (loops nest)
    endloop
    sync                   # wait until every transfer and computation issued so far has finished

The destination comes first, as in most assemblers; reading it the other way round gives the same time
(a link carries both directions), only the capacity check looks at which on-chip memory receives.  SIZE
and NUM are whole numbers or products of them (``32*256*4``), and a size may carry a binary unit (``128KB``).
One extension of the course's language: ``compute MAC_32 M K N`` is a matrix product of an M x K by a
K x N matrix (M*K*N multiply-accumulates), whose shape a systolic array needs to know its folds; on any
other unit it is the same as ``compute MAC_32 M*K*N``.

:func:`parse` turns text into a list of :class:`Move`, :class:`Compute`, :class:`Sync` and :class:`Loop`;
:func:`check` holds a program against a processor.  Every mistake is one UserError naming the file and the
line: an unknown instruction or ram type, a ``move`` larger than its memory, a loop never closed.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Union

from tfbench.plumbing.errors import UserError
from tfbench.processor.spec import OP_RE, Processor

_UNIT = re.compile(r"(\d+)\s*(KB|KiB|MB|MiB|B)\b", re.IGNORECASE)
_FACTOR = {"B": 1, "KB": 1 << 10, "KIB": 1 << 10, "MB": 1 << 20, "MIB": 1 << 20}


@dataclass(frozen=True)
class Move:
    dst: str
    src: str
    size: int
    line: int


@dataclass(frozen=True)
class Compute:
    op: str
    num: int
    line: int
    shape: tuple[int, int, int] | None = None  # (M, K, N) of a matrix product


@dataclass(frozen=True)
class Sync:
    line: int


@dataclass
class Loop:
    count: int
    body: list["Instruction"] = field(default_factory=list)
    line: int = 0


Instruction = Union[Move, Compute, Sync, Loop]


def _number(text: str, where: str, what: str) -> int:
    """A whole number, a product/sum of them, with optional byte units: ``32*256*4``, ``128KB``."""
    expr = _UNIT.sub(lambda m: f"({m.group(1)}*{_FACTOR[m.group(2).upper()]})", text)
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        raise UserError(f"{where}: {what} must be a whole number like 1024, 32*256*4 or 128KB, got {text!r}") from None
    allowed = (ast.Expression, ast.BinOp, ast.Constant, ast.Mult, ast.Add, ast.Sub)
    if not all(isinstance(node, allowed) for node in ast.walk(tree)) or any(
            isinstance(node, ast.Constant) and not isinstance(node.value, int) for node in ast.walk(tree)):
        raise UserError(f"{where}: {what} must be a whole number like 1024, 32*256*4 or 128KB, got {text!r}")
    value = _evaluate(tree.body)
    if value < 0:
        raise UserError(f"{where}: {what} must not be negative, got {text!r} = {value}")
    return int(value)


_OPS = {ast.Mult: lambda a, b: a * b, ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b}


def _evaluate(node: ast.AST) -> int:
    """The value of an expression tree of whole numbers and + - * // (checked by the caller)."""
    if isinstance(node, ast.Constant):
        return int(node.value)
    assert isinstance(node, ast.BinOp)
    return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))


def parse(text: str, source: str = "<program>") -> list[Instruction]:
    """Parse a program; one UserError ``source:LINE: ...`` for the first mistake."""
    top: list[Instruction] = []
    stack: list[tuple[Loop, list[Instruction]]] = []
    body = top
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split("//", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{number}"
        words = line.split()
        head = words[0].lower()
        if head == "move":
            if len(words) != 4:
                raise UserError(f"{where}: expected 'move DST SRC SIZE', got {line!r}")
            body.append(Move(words[1].upper(), words[2].upper(), _number(words[3], where, "SIZE"), number))
        elif head == "compute":
            if len(words) not in (3, 5):
                raise UserError(f"{where}: expected 'compute TYPE NUM' (or 'compute TYPE M K N'), got {line!r}")
            op = words[1].upper()
            if not OP_RE.match(op):
                raise UserError(f"{where}: unknown compute type {words[1]!r}; expected MAC_32, MAC_16, ADD_32, "
                                "ADD_16, SUB_32, SUB_16, MUL_32, MUL_16, DIV_32 or DIV_16")
            if len(words) == 5:
                m, k, n = (_number(w, where, "a matrix dimension") for w in words[2:])
                body.append(Compute(op, m * k * n, number, (m, k, n)))
            else:
                body.append(Compute(op, _number(words[2], where, "NUM"), number))
        elif head == "sync":
            if len(words) != 1:
                raise UserError(f"{where}: 'sync' takes nothing, got {line!r}")
            body.append(Sync(number))
        elif head == "loop":
            if len(words) != 2:
                raise UserError(f"{where}: expected 'loop N', got {line!r}")
            loop = Loop(_number(words[1], where, "the loop count"), [], number)
            body.append(loop)
            stack.append((loop, body))
            body = loop.body
        elif head == "endloop":
            if len(words) != 1:
                raise UserError(f"{where}: 'endloop' takes nothing, got {line!r}")
            if not stack:
                raise UserError(f"{where}: 'endloop' without a 'loop' before it")
            _, body = stack.pop()
        else:
            raise UserError(f"{where}: unknown instruction {words[0]!r}; expected move, compute, loop, endloop "
                            "or sync")
    if stack:
        loop, _ = stack[-1]
        raise UserError(f"{source}:{loop.line}: 'loop {loop.count}' is never closed (no 'endloop')")
    return top


def check(program: list[Instruction], processor: Processor, source: str = "<program>") -> None:
    """Hold ``program`` against ``processor``: known memories, a link between them, fits, a unit for each type."""
    for ins in program:
        where = f"{source}:{ins.line}"
        if isinstance(ins, Loop):
            check(ins.body, processor, source)
        elif isinstance(ins, Move):
            for ram in (ins.dst, ins.src):
                if ram not in processor.memories:
                    raise UserError(f"{where}: unknown ram type {ram!r}; {processor.name} has "
                                    f"{', '.join(processor.memories)}")
            if ins.dst == ins.src:
                raise UserError(f"{where}: move from {ins.src} to itself")
            if processor.link_for(ins.dst, ins.src) is None:
                paths = ", ".join(sorted("-".join(sorted(p)) for link in processor.links.values() for p in link.paths))
                raise UserError(f"{where}: no path between {ins.src} and {ins.dst} on {processor.name}; it has {paths}")
            for ram in (ins.dst, ins.src):
                size = processor.memories[ram].size
                if size is not None and ins.size > size:
                    raise UserError(f"{where}: move of {ins.size} bytes does not fit in {ram} ({size} bytes)")
        elif isinstance(ins, Compute) and processor.unit_for(ins.op) is None:
            kinds = sorted(op for unit in processor.units.values() for op in unit.ops)
            raise UserError(f"{where}: {processor.name} has no unit for {ins.op}; it computes {', '.join(kinds)}")


def render(program: list[Instruction], indent: str = "") -> str:
    """The program as text in the language (what :func:`parse` reads back)."""
    lines = []
    for ins in program:
        if isinstance(ins, Move):
            lines.append(f"{indent}move {ins.dst} {ins.src} {ins.size}")
        elif isinstance(ins, Compute):
            shape = " ".join(map(str, ins.shape)) if ins.shape else str(ins.num)
            lines.append(f"{indent}compute {ins.op} {shape}")
        elif isinstance(ins, Sync):
            lines.append(f"{indent}sync")
        else:
            lines.append(f"{indent}loop {ins.count}")
            lines.append(render(ins.body, indent + "  "))
            lines.append(f"{indent}endloop")
    return "\n".join(line for line in lines if line)


def declared_processor(text: str) -> str | None:
    """The processor a program names in a comment line ``# processor: NAME`` (shipped programs do), or None."""
    for line in text.splitlines():
        m = re.match(r"^\s*#\s*processor:\s*(\S+)\s*$", line)
        if m:
            return m.group(1)
    return None


def shipped_programs() -> list[str]:
    """The programs tfbench ships (``tfbench/processor/programs/*.dlp``): exercises 7.7 to 7.12."""
    import importlib.resources

    folder = importlib.resources.files("tfbench.processor") / "programs"
    return sorted((p.name[:-4] for p in folder.iterdir() if p.name.endswith(".dlp")),
                  key=lambda n: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", n)])


def read_program(ref: str) -> tuple[str, str]:
    """(text, source name) of a shipped program (``ex7_9``) or a file."""
    import importlib.resources
    from pathlib import Path

    if ref in shipped_programs():
        return (importlib.resources.files("tfbench.processor") / "programs" / f"{ref}.dlp").read_text(), f"{ref}.dlp"
    path = Path(ref)
    if not path.is_file():
        raise UserError(f"{ref}: no such program file; give a file or one of {', '.join(shipped_programs())}")
    from tfbench.plumbing.files import read_text

    return read_text(path, "program"), str(path)
