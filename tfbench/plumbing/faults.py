"""Faults of the machine, not of the program: a full disk, a read-only or forbidden folder, too little memory.

:func:`tfbench.plumbing.errors.run_cli` asks :func:`describe` about every exception a command raises; for
these faults it prints one ``error:`` line that names the path (or the size) and the cure, and
exits with code 2 like any user error.  Everything else keeps its traceback.

=====================================  ===============================================================
fault                                  the line says
=====================================  ===============================================================
no space left (``ENOSPC``, quota,      the file, the folder, how much is free there, how much the work
TensorFlow's ``ResourceExhaustedError`` needs when the code said so (:func:`needs_space`), and which
wrapping it)                           flag moves the output elsewhere
read-only file system (``EROFS``)      the path and which flag moves the output elsewhere
permission denied (``EACCES``)         the path, and to change its permissions or use another path
out of memory (``MemoryError``,        the array's shape, type and size, the memory this machine has,
NumPy's ``_ArrayMemoryError``,         and the flag whose value made the array that big
TensorFlow's OOM)
=====================================  ===============================================================

Commands also check sizes before they allocate (:func:`tfbench.plumbing.cli.check_memory`): a batch that cannot fit is
refused with the largest value of its flag that would.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import shutil
from pathlib import Path
from typing import Iterator, Mapping, Sequence

NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
#: TensorFlow's texts for the same faults (it reports ``<path>; No space left on device``).
_TF_TEXT = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.ENOSPC,
            "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}
_NEEDED = "_tfbench_needs_space"
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.[^.]+\.partial$")  # tfbench.plumbing.files.atomic_output's temporary names


def human_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``, ``1023 * 1024 -> '1023 KiB'``: binary units, three significant digits, no exponent."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1023.5 or unit == "PiB":  # 1023.5 KiB and up rounds to "1024 KiB": say "1 MiB" instead
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 100 else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.0f} PiB"  # pragma: no cover


def available_memory() -> int | None:
    """Bytes of memory this process could still get: MemAvailable, capped by a cgroup limit; None if unknown."""
    found = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found = min(found, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return found


@contextlib.contextmanager
def needs_space(folder: str | Path, nbytes: int) -> Iterator[None]:
    """Say how much the work inside needs: a full disk inside this block is reported with ``nbytes``."""
    try:
        yield
    except BaseException as err:
        if not hasattr(err, _NEEDED):
            try:
                setattr(err, _NEEDED, (str(folder), int(nbytes)))
            except AttributeError:  # pragma: no cover - exceptions without a __dict__
                pass
        raise


#: the options of the command now running, as its parser read them: ``{"--batch-size": ["64"], ...}``.
_options_in_use: dict[str, list[str]] = {}


def remember_options(options: Mapping[str, Sequence[str]]) -> None:
    """Keep the running command's options (flag -> values, defaults included) for :func:`describe`.

    :func:`tfbench.plumbing.cli.parse` calls this with what argparse parsed, so a fault names the
    flag the parser gave the value to, never a guess from neighbouring command-line words.
    """
    _options_in_use.clear()
    _options_in_use.update({flag: [str(v) for v in values] for flag, values in options.items()})


def describe(err: BaseException, options: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """The one line for an environment fault, or None when ``err`` is something else (a bug keeps its traceback).

    ``options`` (flag -> values, as the command's parser read them; by default those of
    :func:`remember_options`) lets the line name the flag that chose the path or the size.
    """
    chosen = {flag: list(values) for flag, values in (_options_in_use if options is None else options).items()}
    for exc in _chain(err):
        code, path = _fault(exc)
        if code is not None and (path or code == errno.ENOSPC):  # a refusal without a path names nothing
            return _file_fault(code, path, getattr(err, _NEEDED, None) or getattr(exc, _NEEDED, None), chosen)
        if isinstance(exc, MemoryError) or _is_tf_oom(exc):
            return _memory_fault(exc, chosen)
    return None


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and what it was raised from (``raise ... from``), outermost first."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__


def _fault(exc: BaseException) -> tuple[int | None, str | None]:
    """(errno, path) of a disk or permission fault, from an OSError or from TensorFlow's message."""
    if isinstance(exc, OSError) and exc.errno in (*NO_SPACE, errno.EROFS, errno.EACCES, errno.EPERM):
        code = errno.ENOSPC if exc.errno in NO_SPACE else exc.errno
        return code, exc.filename if isinstance(exc.filename, str) else None
    if type(exc).__module__.startswith("tensorflow") and hasattr(exc, "message"):
        text = str(exc.message)
        for phrase, code in _TF_TEXT.items():
            if phrase in text:
                before = text.split(phrase)[0].rstrip("; :,")
                path = before.split("; ")[-1].split(": ")[-1].strip() if before else None
                return code, path or None
    return None, None


def _is_tf_oom(exc: BaseException) -> bool:
    return type(exc).__name__ == "ResourceExhaustedError" and "OOM" in str(getattr(exc, "message", ""))


def _shown_path(path: str | None) -> str | None:
    """The file a temporary ``.name.XXXX.partial`` stands for (that is the file the user asked for)."""
    if not path:
        return path
    p = Path(path)
    match = _PARTIAL.match(p.name)
    return str(p.with_name(match["name"])) if match else path


def _existing_folder(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(".")


def _flag_for_path(path: str | None, options: dict[str, list[str]]) -> str:
    """Which option chose ``path`` (``--out /x`` for ``/x/y``), else the log folder option; "" if none."""
    if path:
        target = Path(os.path.abspath(path))
        for flag, values in options.items():
            for value in values:
                given = Path(os.path.abspath(value))
                if value and (target == given or given in target.parents):
                    return flag
        from tfbench.plumbing import paths

        logs = Path(os.path.abspath(paths.DEFAULT_LOGDIR))
        if target == logs or logs in target.parents:
            return "--logdir"
    return ""


def _file_fault(code: int, path: str | None, needed: tuple[str, int] | None, options: dict[str, list[str]]) -> str:
    shown = _shown_path(path)
    flag = _flag_for_path(path, options)
    elsewhere = f"pass another folder with {flag}" if flag else "write somewhere else"
    if code == errno.ENOSPC:
        where = Path(needed[0]) if needed else _existing_folder(Path(path).parent if path else Path("."))
        free = shutil.disk_usage(_existing_folder(where)).free
        need = f"; this needs about {human_bytes(needed[1])} in all" if needed else ""
        return (f"no space left on the device writing {shown or 'a file'}: {human_bytes(free)} free in "
                f"{_existing_folder(where)}{need}; free some space or {elsewhere}")
    if code == errno.EROFS:
        return f"{shown or 'a file'}: the file system is read-only; {elsewhere}"
    return (f"{shown or 'a file'}: permission denied; change its permissions (or its folder's) "
            f"or {elsewhere if flag else 'use another path'}")


def _memory_fault(exc: BaseException, options: dict[str, list[str]]) -> str:
    shape = tuple(getattr(exc, "shape", ()) or ())
    dtype = getattr(exc, "dtype", None)
    tf_oom = re.search(r"tensor with shape\[([\d,]+)\] and type (\w+)", str(getattr(exc, "message", "")))
    if tf_oom and not shape:  # TensorFlow: "OOM when allocating tensor with shape[100000000,32,32,1] and type float"
        import numpy as np

        shape = tuple(int(d) for d in tf_oom[1].split(",") if d)
        try:
            dtype = np.dtype({"float": "float32", "double": "float64", "half": "float16"}.get(tf_oom[2], tf_oom[2]))
        except TypeError:
            dtype = None
    available = available_memory()
    have = f"; {human_bytes(available)} of memory is available here" if available is not None else ""
    if shape and dtype is not None:
        size = math.prod(int(d) for d in shape) * dtype.itemsize
        what = f"{'a tensor' if tf_oom else 'an array'} of shape {shape} {dtype} needs {human_bytes(size)}"
    elif _is_tf_oom(exc):
        what = "TensorFlow could not allocate " + str(exc.message).split("OOM when allocating ")[-1].split("\n")[0]
    else:
        what = "an allocation failed"
    # The flag whose value is the largest dimension of the failed shape made it that big (--batch-size
    # 100000 in (100000, 224, 224, 3), not --repeats 3).
    dims = {int(d) for d in shape if int(d) > 1}
    sized = [(int(v), flag) for flag, values in options.items() for v in values if v.isdigit() and int(v) in dims]
    cure = (f"lower {max(sized)[1]}" if sized else "lower the sizes asked for (--batch-size, --image-size, ...)")
    return f"out of memory: {what}{have}; {cure}"
