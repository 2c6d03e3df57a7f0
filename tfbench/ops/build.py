"""Compile a custom op in ``custom_ops/<name>/`` against the installed TensorFlow, once.

A TensorFlow custom op is a shared library: C++ that includes TensorFlow's headers and links
against ``libtensorflow_framework``.  ``tf.sysconfig.get_compile_flags()`` and
``get_link_flags()`` give the include path, the C++ ABI and the C++ standard the installed
wheel was built with (C++17 since TF 2.16; the official custom-op template's C++14 and
``Status::OK()`` no longer compile), so the library matches the TensorFlow that loads it.

The library is cached in ``custom_ops/<name>/build/`` under a name that contains the
TensorFlow version and a hash of the sources, flags and compiler, so it is rebuilt only when
one of them changes.  The compiler writes to a temporary name that is renamed into place, and
a file lock makes concurrent processes (parallel tests) wait for one build instead of racing.

Run ``python -m tfbench.ops build`` to build ahead of time; the ops also build on first use.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tfbench import paths
from tfbench.errors import UserError
from tfbench.files import atomic_output

ENV_BUILD_DIR = "TFBENCH_OPS_BUILD_DIR"
"""Environment variable that moves every op's build cache (default ``custom_ops/<name>/build``)."""

# -ffp-contract=off: a kernel computes what its source says; the compiler may not fuse a * b + c
# into one FMA (different rounding), so kernels can match TensorFlow's own bit for bit.
BASE_FLAGS = ("-std=c++17", "-shared", "-fPIC", "-O3", "-ffp-contract=off", "-Wno-deprecated-declarations")


class BuildError(UserError):
    """The op library could not be built (no compiler, or the compiler failed)."""


@dataclass(frozen=True)
class BuildPlan:
    """Everything that decides the library: its sources, the compiler and the full command."""

    name: str
    sources: tuple[Path, ...]
    compiler: str
    flags: tuple[str, ...]
    library: Path

    def command(self, output: Path) -> list[str]:
        """The compiler command line that writes the library to ``output``."""
        return [self.compiler, *[str(s) for s in self.sources], "-o", str(output), *self.flags]


def find_compiler(compiler: str | None = None) -> str | None:
    """The C++ compiler to use: ``compiler``, else ``$CXX``, else g++/c++/clang++ on PATH."""
    candidates = [compiler] if compiler else ([os.environ["CXX"]] if os.environ.get("CXX") else
                                              ["g++", "c++", "clang++"])
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def source_dir(name: str) -> Path:
    """``custom_ops/<name>/``, checked to exist and to hold C++ sources."""
    folder = paths.CUSTOM_OPS_DIR / name
    if not folder.is_dir() or not any(folder.glob("*.cc")):
        known = sorted(p.name for p in paths.CUSTOM_OPS_DIR.glob("*") if any(p.glob("*.cc")))
        raise UserError(f"no custom op {name!r}: {folder} has no .cc files (known ops: {', '.join(known) or 'none'})")
    return folder


def build_dir(name: str, override: str | Path | None = None) -> Path:
    """Where op ``name``'s library is cached: ``override``, ``$TFBENCH_OPS_BUILD_DIR`` or custom_ops/<name>/build."""
    if override is not None:
        return Path(override)
    if os.environ.get(ENV_BUILD_DIR):
        return Path(os.environ[ENV_BUILD_DIR])
    return source_dir(name) / "build"


def _cpu_flags() -> list[str]:
    """-mavx2 -mfma when this CPU has them (the library is built on, and for, this machine)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= set(flags) else []


def _compiler_version(compiler: str) -> str:
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else compiler
    except (OSError, subprocess.SubprocessError):
        return compiler


def plan(name: str, *, compiler: str | None = None, build_directory: str | Path | None = None) -> BuildPlan:
    """Work out the sources, flags and cached library path for op ``name`` (no compiling)."""
    import tensorflow as tf

    folder = source_dir(name)
    sources = tuple(sorted(folder.glob("*.cc")))
    found = find_compiler(compiler)
    if found is None:
        wanted = compiler or os.environ.get("CXX") or "g++, c++ or clang++"
        raise BuildError(f"no C++ compiler found ({wanted} is not on PATH): install g++ (Debian/Ubuntu: "
                         f"apt-get install g++) or set CXX to build custom_ops/{name}")
    flags = (*BASE_FLAGS, *_cpu_flags(), *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags())
    digest = hashlib.sha256()
    for part in (tf.__version__, tf.sysconfig.get_lib(), _compiler_version(found), *flags):
        digest.update(part.encode() + b"\0")
    for source in sorted([*sources, *folder.glob("*.h")]):
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    library = build_dir(name, build_directory) / f"{name}-tf{tf.__version__}-{digest.hexdigest()[:12]}.so"
    return BuildPlan(name, sources, found, flags, library)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(name: str, *, compiler: str | None = None, build_directory: str | Path | None = None,
          force: bool = False, quiet: bool = False) -> Path:
    """Return the path of op ``name``'s library, compiling it first if the cache has none."""
    p = plan(name, compiler=compiler, build_directory=build_directory)
    if p.library.exists() and not force:
        return p.library
    with _locked(p.library.parent / f".{name}.lock"):
        if p.library.exists() and not force:  # another process built it while we waited
            return p.library
        if not quiet:
            print(f"compiling custom_ops/{name} with {Path(p.compiler).name} against TensorFlow "
                  f"(once per TensorFlow version and source change; about 30-60 s)...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        log = p.library.with_suffix(".log")
        with atomic_output(p.library) as tmp:
            result = subprocess.run(p.command(tmp), capture_output=True, text=True)
            log.write_text(" ".join(p.command(p.library)) + "\n\n" + result.stdout + result.stderr)
            if result.returncode != 0:
                errors = [line for line in result.stderr.splitlines() if "error" in line]
                first = errors[0].strip() if errors else result.stderr.strip()[-300:]
                raise BuildError(f"compiling custom_ops/{name} failed ({Path(p.compiler).name} exit "
                                 f"{result.returncode}): {first} (full log: {log})")
        _remove_stale(p.library)
        if not quiet:
            print(f"built {p.library} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return p.library


def _remove_stale(library: Path) -> None:
    """Delete the libraries this one replaces: same op and TensorFlow version, older sources.

    Libraries of other TensorFlow versions stay (another virtualenv may use this checkout).
    A process that still has an old library loaded keeps working: Linux frees it on exit.
    """
    prefix = library.name.rsplit("-", 1)[0]  # <name>-tf<version>
    for old in library.parent.glob(f"{prefix}-*"):
        if old.suffix in (".so", ".log") and old.stem != library.stem:
            old.unlink(missing_ok=True)


_LOADED: dict[Path, Any] = {}
_BY_NAME: dict[str, Any] = {}  # load_once's modules, by op name


def load(name: str, **build_kwargs: Any) -> Any:
    """Build (if needed) and load op ``name``; returns the module ``tf.load_op_library`` makes."""
    import tensorflow as tf

    library = build(name, **build_kwargs)
    if library not in _LOADED:
        try:
            _LOADED[library] = tf.load_op_library(str(library))
        except tf.errors.NotFoundError as err:  # e.g. an undefined symbol: built for another TensorFlow
            raise BuildError(f"loading {library} failed: {err.message.splitlines()[0]} "
                             f"(rebuild with: python -m tfbench.ops build --force)") from err
    return _LOADED[library]


def load_once(name: str) -> Any:
    """The module of op ``name`` for this process: built and loaded by the first call, reused after.

    Later calls skip :func:`plan` (hashing the sources, asking the compiler its version); a
    failure is not remembered, so the next call tries again.
    """
    if name not in _BY_NAME:
        _BY_NAME[name] = load(name)
    return _BY_NAME[name]
