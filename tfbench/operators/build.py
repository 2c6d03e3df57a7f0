"""Compile a custom op in ``custom_ops/<name>/`` against the installed TensorFlow, once.

A TensorFlow custom op is a shared library: C++ that includes TensorFlow's headers and links
against ``libtensorflow_framework``.  ``tf.sysconfig.get_compile_flags()`` and
``get_link_flags()`` give the include path, the C++ ABI and the C++ standard the installed
wheel was built with (C++17 since TF 2.16; the official custom-op template's C++14 and
``Status::OK()`` no longer compile), so the library matches the TensorFlow that loads it.

The sources ship with the package (:func:`tfbench.plumbing.paths.shipped`); the library goes to the per-user
cache (:func:`tfbench.plumbing.paths.cache_root`), never into the package folder (site-packages may be
read-only): ``$TFBENCH_CACHE``, else ``$XDG_CACHE_HOME/tfbench``, else ``~/.cache/tfbench``, in
``ops/<name>/tf<version>-<key>/<name>.so``, where the key hashes the compile flags, the compiler
and the sources.  Upgrading TensorFlow or changing a source builds a new folder; the old ones
stay (about 0.1 MB each), so two virtualenvs or checkouts share the cache without rebuilding each
other's libraries; deleting the cache folder clears them all.  The compiler writes to a
temporary name that is renamed into place, and a file lock makes concurrent processes wait for
one build instead of racing.

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
from typing import Any, Callable, Iterator, Sequence

from tfbench.plumbing import paths
from tfbench.plumbing.errors import UserError, first_line
from tfbench.plumbing.files import atomic_output

# -ffp-contract=off: a kernel computes what its source says; the compiler may not fuse a * b + c
# into one FMA (different rounding), so kernels can match TensorFlow's own bit for bit.
BASE_FLAGS = ("-std=c++17", "-shared", "-fPIC", "-O3", "-ffp-contract=off", "-Wno-deprecated-declarations")


class BuildError(UserError):
    """The op library could not be built (no compiler, or the compiler failed)."""


@dataclass(frozen=True)
class Needs:
    """What one op's library needs beyond TensorFlow's framework library (one library per op, as
    tensorflow/custom-op does: an op whose needs are missing here fails alone, the others still build)."""

    headers_from: tuple[str, ...] = ()  # other custom_ops/ folders whose headers it includes (-I, hashed)
    kernel_library: bool = False  # TensorFlow's kernel library: libtensorflow_cc and its JPEG headers


#: The ops that need more than TensorFlow's framework; every other op needs nothing else.
NEEDS = {"decode_resize_normalise": Needs(headers_from=("resize_normalise",), kernel_library=True)}


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


def known_ops() -> list[str]:
    """The ops that ship with tfbench: each folder of ``custom_ops/`` that holds C++ sources, sorted."""
    root = paths.shipped("custom_ops")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.cc")))


def source_dir(name: str) -> Path:
    """``custom_ops/<name>/`` as shipped, checked to exist and to hold C++ sources."""
    folder = paths.shipped("custom_ops", name)
    if not folder.is_dir() or not any(folder.glob("*.cc")):
        raise UserError(f"no custom op {name!r}: {folder} has no .cc files "
                        f"(known ops: {', '.join(known_ops()) or 'none'})")
    return folder


def _writable(folder: Path) -> Path:
    """``folder``, created if missing; a :class:`BuildError` naming it and ``$TFBENCH_CACHE`` if it isn't writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:
        raise BuildError(f"cannot write the tfbench cache folder {folder}: {err.strerror or err} "
                         f"(set {paths.ENV_CACHE} to a writable folder to move the cache)") from err
    return folder


def _cpu_flags() -> list[str]:
    """-mavx2 -mfma when this CPU has them (the library is built on, and for, this machine)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= set(flags) else []


def _vector_flags() -> list[str]:
    """The widest vector extension of this CPU, for ops whose kernels are written for one (custom_ops/conv2d/simd.h):
    AVX-512 (F, DQ, BW, VL) where present, else AVX2 + FMA, else none (portable code).  Decided on the machine
    that builds, and part of the flags, so part of the cache key."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl", "avx2", "fma"} <= flags:
        return ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"]
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= flags else []


#: per-op flags beyond the shared ones, each a function run on the machine that builds.
EXTRA_FLAGS: dict[str, Callable[[], list[str]]] = {"conv2d": _vector_flags}


def _kernel_library_flags(name: str, include: str, lib: str) -> list[str]:
    """Flags to use TensorFlow's own kernel helpers, such as ``tensorflow::jpeg`` (the JPEG decoder of
    ``tf.io.decode_jpeg``): the headers of the libjpeg-turbo it bundles, and ``libtensorflow_cc``, which
    exports them.  A :class:`BuildError` naming op ``name`` where the wheel has no such library."""
    if not (Path(lib) / "libtensorflow_cc.so.2").exists():
        raise BuildError(f"custom_ops/{name} needs TensorFlow's kernel library, which this TensorFlow has not: "
                         f"no libtensorflow_cc.so.2 in {lib}")
    return [f"-I{Path(include) / 'external' / 'libjpeg_turbo'}", "-l:libtensorflow_cc.so.2"]


def _compiler_version(compiler: str) -> str:
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else compiler
    except (OSError, subprocess.SubprocessError):
        return compiler


def plan(name: str, *, compiler: str | None = None, cache: str | Path | None = None) -> BuildPlan:
    """Work out the sources, flags and cached library path for op ``name`` (no compiling).

    ``cache`` replaces the per-user cache folder (:func:`tfbench.plumbing.paths.cache_root`); the library goes to
    ``<cache>/ops/<name>/tf<version>-<key>/<name>.so``.
    """
    import tensorflow as tf

    folder = source_dir(name)
    sources = tuple(sorted(folder.glob("*.cc")))
    found = find_compiler(compiler)
    if found is None:
        wanted = compiler or os.environ.get("CXX") or "g++, c++ or clang++"
        raise BuildError(f"no C++ compiler found ({wanted} is not on PATH): install g++ (Debian/Ubuntu: "
                         f"apt-get install g++) or set CXX to build custom_ops/{name}")
    needs = NEEDS.get(name, Needs())
    shared = [source_dir(other) for other in needs.headers_from]
    flags = (*BASE_FLAGS, *_cpu_flags(), *EXTRA_FLAGS.get(name, list)(),
             *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags(),
             *(_kernel_library_flags(name, tf.sysconfig.get_include(), tf.sysconfig.get_lib())
               if needs.kernel_library else ()))
    headers = [h for other in (folder, *shared) for h in other.glob("*.h")]
    # the shared headers' contents are in the key, their folder (which checkout) is not
    key = cache_key((tf.__version__, tf.sysconfig.get_lib(), _compiler_version(found), *flags),
                    sorted([*sources, *headers]))
    flags = (*flags, *[f"-I{other}" for other in shared])
    root = Path(cache).expanduser() if cache is not None else paths.cache_root()
    library = root / "ops" / name / f"tf{tf.__version__}-{key}" / f"{name}.so"
    return BuildPlan(name, sources, found, flags, library)


def cache_key(settings: Sequence[str], sources: Sequence[Path]) -> str:
    """12 hex digits of a hash over the compile settings (flags, compiler, TensorFlow) and the sources."""
    digest = hashlib.sha256()
    for part in settings:
        digest.update(part.encode() + b"\0")
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


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


def build(name: str, *, compiler: str | None = None, cache: str | Path | None = None,
          force: bool = False, quiet: bool = False) -> Path:
    """Return the path of op ``name``'s library, compiling it first if the cache has none.

    A cache that already holds the library is only read (it may be read-only); one that must be
    written and cannot be is a :class:`BuildError` naming the folder and ``$TFBENCH_CACHE``.
    """
    p = plan(name, compiler=compiler, cache=cache)
    if p.library.exists() and not force:
        return p.library
    _writable(p.library.parent)
    with _locked(p.library.parent / ".lock"):
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
        if not quiet:
            print(f"built {p.library} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return p.library


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
            raise BuildError(f"loading {library} failed: {first_line(err)} "
                             f"(rebuild with: tfbench ops build --force)") from err
    return _LOADED[library]


def load_once(name: str) -> Any:
    """The module of op ``name`` for this process: built and loaded by the first call, reused after.

    Later calls skip :func:`plan` (hashing the sources, asking the compiler its version); a
    failure is not remembered, so the next call tries again.
    """
    if name not in _BY_NAME:
        _BY_NAME[name] = load(name)
    return _BY_NAME[name]
