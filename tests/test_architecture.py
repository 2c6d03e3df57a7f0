"""The package's import rules, read from the source with ``ast`` (see the README's architecture section).

- library code (``models/``, ``data/``, ``ops/``, ``distributed/`` and the shared modules) never
  imports a command module;
- ``models`` never imports ``data``;
- nothing imports a command module, except a command's own ``__main__``;
- no import circles among tfbench's modules (imports inside functions count too);
- no module is over 600 lines (split by job, as distributed/ is: training, service, cli);
- argparse lives in the commands (and ``tfbench.cli``, their shared pieces): library functions take typed arguments;
- every command is listed by ``python -m tfbench`` and every benchmark module exists.

A top-level module is a command when it runs (``if __name__ == "__main__":``); the rest are
shared library modules (summaries, grappler, train, cli, ...).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from tfbench import __main__ as listing
from tfbench import bench

PACKAGE = Path(__file__).resolve().parent.parent / "tfbench"
#: command modules that live inside a library package (everything else top-level with a ``main`` is a command).
NESTED_COMMANDS = {"tfbench.ops.__main__", "tfbench.ops.bench", "tfbench.distributed.__main__",
                   "tfbench.distributed.cli"}
#: the timing harness is library code that also runs as ``python -m tfbench.bench`` (it dispatches by name).
SHARED = {"tfbench.bench"}
#: the benchmark dispatcher is a shared harness that loads benchmark modules by name (importlib), not by import.


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def imports_of(path: Path, name: str) -> set[str]:
    """Every tfbench module ``path`` imports (at top level or inside functions), resolved to module names."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("tfbench"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfbench") and not node.level:
            found.add(node.module)
            for alias in node.names:  # "from tfbench.data import reader" imports the module tfbench.data.reader
                if f"{node.module}.{alias.name}" in MODULES:
                    found.add(f"{node.module}.{alias.name}")
    found.discard(name)
    return found


def is_command(name: str) -> bool:
    if name in NESTED_COMMANDS:
        return True
    path = MODULES.get(name)
    if path is None or name.count(".") != 1 or path.name in ("__init__.py", "__main__.py") or name in SHARED:
        return False
    return 'if __name__ == "__main__":' in path.read_text()  # a top-level module that runs is a command


def is_library(name: str) -> bool:
    return not is_command(name) and name != "tfbench.__main__"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if is_library(n)))
def test_library_code_never_imports_a_command(name: str) -> None:
    bad = sorted(m for m in imports_of(MODULES[name], name) if is_command(m))
    assert not bad, f"{name} (library) imports command module(s) {bad}: move what it needs into a library module"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("tfbench.models")))
def test_models_never_import_data(name: str) -> None:
    bad = sorted(m for m in imports_of(MODULES[name], name) if m.startswith("tfbench.data"))
    assert not bad, f"{name} imports {bad}: models are architectures; data code may use models, not the reverse"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if is_command(n)))
def test_commands_do_not_import_other_commands(name: str) -> None:
    own_package = name.rsplit(".", 1)[0]
    bad = sorted(m for m in imports_of(MODULES[name], name)
                 if is_command(m) and not (name.endswith("__main__") and m.startswith(own_package)))
    assert not bad, f"{name} imports command module(s) {bad}: share library code instead"


def test_no_module_over_600_lines() -> None:
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines (split them by job): {long}"


def _imports_argparse(path: Path) -> bool:
    return any((isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names))
               or (isinstance(node, ast.ImportFrom) and node.module == "argparse")
               for node in ast.walk(ast.parse(path.read_text(), str(path))))


@pytest.mark.parametrize("name", sorted(n for n in MODULES if is_library(n) and n not in {"tfbench.cli", *SHARED}
                                        and n not in {module for module, _ in bench.BENCHMARKS.values()}))
def test_library_code_takes_typed_arguments_not_argparse(name: str) -> None:
    assert not _imports_argparse(MODULES[name]), (
        f"{name} (library) imports argparse: parse in the command, pass typed arguments (or a small dataclass)")


def test_the_rules_can_fail() -> None:
    """The checker itself: a library module importing a command is caught."""
    fake = PACKAGE / "data" / "_probe_for_test.py"
    try:
        fake.write_text("def f():\n    from tfbench import vgg_graph\n    from tfbench.models import vgg19\n")
        found = imports_of(fake, "tfbench.data._probe_for_test")
        assert "tfbench.vgg_graph" in found and is_command("tfbench.vgg_graph")
        assert "tfbench.models.vgg19" in found and not is_command("tfbench.models.vgg19")
    finally:
        fake.unlink()


def test_every_command_is_listed_and_every_listing_exists() -> None:
    commands = {n for n in MODULES if is_command(n) and n.count(".") == 1}
    commands |= {n.rsplit(".", 1)[0] for n in NESTED_COMMANDS if n.endswith("__main__")}
    listed = {f"tfbench.{name}" for name in listing.EXPERIMENTS}
    helpers_run_by_bench = {module for module, _ in bench.BENCHMARKS.values()}
    unlisted = sorted(commands - listed - helpers_run_by_bench)
    assert not unlisted, f"commands missing from `python -m tfbench`: {unlisted}"
    for module in listed | helpers_run_by_bench:
        assert importlib.util.find_spec(module) is not None, f"{module} is listed but does not exist"


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the tfbench modules it imports, anywhere in its body; relative imports resolved.

    ``from P import n`` is an edge to ``P.n`` when that is a module, else to ``P``; a name that is
    not a module resolves to the deepest module that contains it (``tfbench.models.get`` -> ``tfbench.models``).
    """
    def deepest(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: list[str] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        graph[name] = {m for t in targets if (m := deepest(t)) is not None and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import each other, directly or through others (Tarjan's strongly connected parts)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1 or v in graph.get(v, ()):
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    found = circles(import_graph(MODULES))
    assert not found, "import circles (move what both need into a third module): " + "; ".join(
        " <-> ".join(part) for part in found)


def test_the_circle_check_can_fail(tmp_path: Path) -> None:
    """The checker itself: a three-module circle through a relative and a function-level import is found."""
    pkg = tmp_path / "tfbench" / "probe"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from tfbench.probe.c import thing\n")
    (pkg / "c.py").write_text("import tfbench.probe.a\nthing = 1\n")
    (pkg / "d.py").write_text("from tfbench.probe import a\n")
    modules = {f"tfbench.probe.{p.stem}" if p.stem != "__init__" else "tfbench.probe": p for p in pkg.glob("*.py")}
    graph = import_graph(modules)
    assert graph["tfbench.probe.b"] == {"tfbench.probe.c"} and graph["tfbench.probe.a"] == {"tfbench.probe.b"}
    assert circles(graph) == [["tfbench.probe.a", "tfbench.probe.b", "tfbench.probe.c"]]
