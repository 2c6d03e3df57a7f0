"""The package's shape and import rules, read from the source with ``ast`` (docs/architecture.md).

- the top level of ``tfbench/`` holds only commands: every ``tfbench/<name>.py`` (besides ``__init__``
  and ``__main__``) has a ``main`` and an ``if __name__ == "__main__":`` guard, and ``python -m tfbench``
  lists it;
- all library code lives in packages, each with a place in :data:`LAYERS`; a package imports only
  from its own layer or the layers below it (so ``models`` never imports ``data``, and nothing
  imports ``benchmarks``);
- no library module imports a command, and commands do not import each other;
- no import circles among tfbench's modules (imports inside functions and relative imports count);
- no module is over 600 lines;
- argparse lives in the commands, in ``tfbench.plumbing.cli`` (their shared pieces) and in the
  benchmarks (each parses the options of its ``bench NAME``): library functions take typed arguments.

Each rule is a function over a ``{module name: path}`` map, so ``test_the_rules_can_fail`` can run
it on a small tree written for the purpose.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from tfbench import __main__ as listing
from tfbench.bench import BENCHMARKS

PACKAGE = Path(__file__).resolve().parent.parent / "tfbench"

#: The library's packages, lowest first.  A package may import its own modules and those of the
#: packages before it; docs/architecture.md shows the same order as a picture.
LAYERS = (
    "plumbing",        # argument pieces, errors and faults, atomic files, shipped paths
    "reporting",       # TensorBoard writers, text tables, readable graph views
    "timing",          # the benchmark harness and the machine it ran on
    "operators",       # custom C++ ops: build, backend rule, wrappers, registered gradients
    "models",          # architectures, the registry, the one loader, counting
    "data",            # images with channel order, recipes, TFRecords, MNIST, weight files
    "rewriting",       # grappler's passes as switches, fusion experiments
    "training",        # training loops, mixed precision, sparsity, the MNIST classics
    "backprop",        # chapter 2: perceptron, activations, back-propagation by hand, momentum, optimisers
    "parallel",        # tf.distribute, the local cluster, the tf.data service
    "style_transfer",  # the style-transfer lab: pixel optimisation, the transform net's training
    "inspection",      # the report on any model, the main job's steps, the roofline
    "processor",       # chapters 6-7: the deep-learning processor as data, its language, simulator, compiler
    "benchmarks",      # what `python -m tfbench.bench NAME` runs
)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def all_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


MODULES = all_modules()


def is_command(name: str, modules: dict[str, Path]) -> bool:
    """A module directly in ``tfbench/``, other than ``__init__`` and ``__main__``."""
    return name.count(".") == 1 and modules[name].name not in ("__init__.py", "__main__.py")


def library_package(name: str, modules: dict[str, Path]) -> str | None:
    """The package a library module belongs to (``tfbench.data`` itself included); None for the top level."""
    parts = name.split(".")
    if len(parts) > 2 or (len(parts) == 2 and modules[name].name == "__init__.py"):
        return parts[1]
    return None


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


# ---------------------------------------------------------------- the rules, each over a module map

def top_level_library_modules(modules: dict[str, Path]) -> list[str]:
    """Top-level modules that are not commands: no ``main`` function or no ``__main__`` guard."""
    found = []
    for name, path in modules.items():
        if not is_command(name, modules):
            continue
        tree = ast.parse(path.read_text(), str(path))
        has_main = any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
        has_guard = any(isinstance(n, ast.If) and "__name__" in ast.unparse(n.test) for n in tree.body)
        if not (has_main and has_guard):
            found.append(name)
    return found


def packages_without_a_layer(modules: dict[str, Path], layers: tuple[str, ...] = LAYERS) -> list[str]:
    return sorted({p for n in modules if (p := library_package(n, modules)) and p not in layers})


def library_imports_of_commands(modules: dict[str, Path]) -> list[tuple[str, str]]:
    graph = import_graph(modules)
    return sorted((name, target) for name, targets in graph.items() if library_package(name, modules)
                  for target in targets if is_command(target, modules))


def command_imports_of_commands(modules: dict[str, Path]) -> list[tuple[str, str]]:
    graph = import_graph(modules)
    return sorted((name, target) for name, targets in graph.items() if is_command(name, modules)
                  for target in targets if is_command(target, modules))


def upward_imports(modules: dict[str, Path], layers: tuple[str, ...] = LAYERS) -> list[tuple[str, str]]:
    """``(importer, imported)`` where the imported module's package sits above the importer's in ``layers``."""
    graph = import_graph(modules)
    found = []
    for name, targets in graph.items():
        here = library_package(name, modules)
        if here not in layers:
            continue
        for target in targets:
            there = library_package(target, modules)
            if there in layers and layers.index(there) > layers.index(here):
                found.append((name, target))
    return sorted(found)


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


# ---------------------------------------------------------------- the rules on tfbench itself

def test_the_top_level_holds_only_commands() -> None:
    found = top_level_library_modules(MODULES)
    assert not found, f"library modules at the top of tfbench/ (move them into a package of LAYERS): {found}"


def test_every_package_has_a_layer() -> None:
    found = packages_without_a_layer(MODULES)
    assert not found, f"packages missing from LAYERS (give each a place, here and in docs/architecture.md): {found}"


def test_library_code_never_imports_a_command() -> None:
    found = library_imports_of_commands(MODULES)
    assert not found, f"library modules importing commands (move what they need into the library): {found}"


def test_commands_do_not_import_other_commands() -> None:
    found = command_imports_of_commands(MODULES)
    assert not found, f"commands importing commands (share library code instead): {found}"


def test_packages_import_only_downward() -> None:
    found = upward_imports(MODULES)
    assert not found, f"imports that run up the layers {LAYERS}: {found}"


def test_no_import_circles() -> None:
    found = circles(import_graph(MODULES))
    assert not found, "import circles (move what both need into a third module): " + "; ".join(
        " <-> ".join(part) for part in found)


def test_no_module_over_600_lines() -> None:
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines (split them by job): {long}"


def _imports_argparse(path: Path) -> bool:
    return any((isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names))
               or (isinstance(node, ast.ImportFrom) and node.module == "argparse")
               for node in ast.walk(ast.parse(path.read_text(), str(path))))


@pytest.mark.parametrize("name", sorted(n for n in MODULES if library_package(n, MODULES)
                                        and n != "tfbench.plumbing.cli" and not n.startswith("tfbench.benchmarks")))
def test_library_code_takes_typed_arguments_not_argparse(name: str) -> None:
    assert not _imports_argparse(MODULES[name]), (
        f"{name} (library) imports argparse: parse in the command, pass typed arguments (or a small dataclass)")


def test_every_command_is_listed_and_every_listing_exists() -> None:
    commands = {n for n in MODULES if is_command(n, MODULES)}
    listed = {f"tfbench.{name}" for name in listing.EXPERIMENTS}
    assert commands == listed, (f"commands not listed by `python -m tfbench`: {sorted(commands - listed)}; "
                                f"listed but missing: {sorted(listed - commands)}")
    for module, _ in BENCHMARKS.values():
        assert importlib.util.find_spec(module) is not None, f"benchmark module {module} does not exist"
        assert module.startswith("tfbench.benchmarks.") or is_command(module, MODULES), (
            f"{module}: a benchmark lives in tfbench/benchmarks/, or in the command whose options it shares")


# ---------------------------------------------------------------- the checker itself

def test_the_rules_can_fail(tmp_path: Path) -> None:
    """Each rule, run on a small tree written for the purpose, finds the fault put there."""
    root = tmp_path / "tfbench"
    files = {
        "__init__.py": "",
        "vgg_graph.py": "def main():\n    pass\n\n\nif __name__ == '__main__':\n    main()\n",
        "graphs.py": "from tfbench import vgg_graph\n\n\ndef main():\n    pass\n\n\n"
                     "if __name__ == '__main__':\n    main()\n",
        "helpers.py": "X = 1\n",  # library code at the top level
        "plumbing/__init__.py": "",
        "plumbing/files.py": "def f():\n    from tfbench.models import vgg19\n",  # an arrow up
        "models/__init__.py": "",
        "models/vgg19.py": "from .. import vgg_graph\n",  # library -> command, through a relative import
        "gadgets/__init__.py": "",  # a package without a layer
    }
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    modules = all_modules(root)
    layers = ("plumbing", "models")
    assert top_level_library_modules(modules) == ["tfbench.helpers"]
    assert packages_without_a_layer(modules, layers) == ["gadgets"]
    assert library_imports_of_commands(modules) == [("tfbench.models.vgg19", "tfbench.vgg_graph")]
    assert command_imports_of_commands(modules) == [("tfbench.graphs", "tfbench.vgg_graph")]
    assert upward_imports(modules, layers) == [("tfbench.plumbing.files", "tfbench.models.vgg19")]


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
