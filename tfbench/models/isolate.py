"""Opening an untrusted model file in a child process first, so a crash inside TensorFlow ends in one line.

TensorFlow's loaders are C++: a damaged ``saved_model.pb``, ``.h5`` or ``.keras`` can trip a
``CHECK`` (abort), a segmentation fault, or an allocation of more memory than the machine has.
In the process of the command that would end everything with a core dump.  So, as a browser
opens a PDF in a sandboxed process, tfbench first loads the file *and traces and runs it once*
(batch 1, zeros) in a child process; only when that worked does the command load it itself.

The child (:func:`serve`) imports TensorFlow once and answers requests, one JSON line each, so
many files can be checked by one child (the fuzz tests do).  It runs under an address-space limit
of the machine's memory (``RLIMIT_AS``), so an allocation storm fails inside it.  The parent
(:class:`Prober`) turns every way the child can end into one line: its own error (``UserError``
text), death by a signal (``SIGABRT``, ``SIGSEGV``, ``SIGKILL`` by the kernel's OOM killer) with
the last line TensorFlow printed, or no answer within ``timeout`` seconds; then starts a fresh child
for the next file.  The cost (one more TensorFlow start, one more load and trace) is measured in
docs/security.md.  Part of the workbench's model loading (:mod:`tfbench.models.load`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Sequence

from tfbench.plumbing.errors import UserError

DEFAULT_TIMEOUT = 60.0  # seconds the child may take for one file (load + first trace)
CHILD_CODE = "from tfbench.models.load import serve_child; serve_child()"
#: the lines of a dying child worth quoting: TensorFlow's fatal log, a CHECK, C++'s terminate, Python's fatal error
FATAL_LINE = re.compile(r"^F\d{4} |Check failed|terminate called|Fatal Python error")


def machine_memory_bytes() -> int:
    """Physical memory of this machine (``MemTotal``), the child's address-space limit."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 16 << 30


@dataclass(frozen=True)
class Request:
    """What the child loads: the path as given, ``--input-shape`` and ``--allow-code``."""

    ref: str
    input_shape: tuple[int, ...] | None = None
    allow_code: bool = False

    def to_json(self) -> str:
        """One request line."""
        return json.dumps({"ref": self.ref, "input_shape": list(self.input_shape) if self.input_shape else None,
                           "allow_code": self.allow_code})


def _limit_memory() -> None:
    """In the child, before TensorFlow: its address space may not exceed the machine's memory."""
    import resource

    limit = machine_memory_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard if hard != resource.RLIM_INFINITY else hard))


def serve(check: Callable[[Request], str | None], stdin: IO[str] | None = None,
          stdout: IO[str] | None = None) -> None:
    """The child's loop: one request line in, ``check(request)``, one answer line out (``{"ok": true}`` or
    ``{"error": "..."}``).  The child runs :func:`tfbench.models.load.serve_child`, which passes its check."""
    _limit_memory()
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for line in stdin:
        if not line.strip():
            continue
        raw = json.loads(line)
        request = Request(raw["ref"], tuple(raw["input_shape"]) if raw.get("input_shape") else None,
                          bool(raw.get("allow_code")))
        error = check(request)
        stdout.write(json.dumps({"ok": True} if error is None else {"error": error}) + "\n")
        stdout.flush()


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class Prober:
    """A child process that loads model files for the parent; restarted after a crash or a timeout.

    ``check(request)`` returns None when the file loads and runs once in the child, else the one
    line to print.  Use as a context manager (the child is stopped at the end).
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, env: dict[str, str] | None = None):
        self.timeout = timeout
        self.env = env
        self.process: subprocess.Popen | None = None
        self.stderr: IO[bytes] | None = None
        self.started = 0  # children started (a test reads it: crashes cost a restart)

    def __enter__(self) -> "Prober":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, **(self.env or {}), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        root = str(Path(__file__).resolve().parents[2])  # tfbench imports from the same place in the child
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, "-c", CHILD_CODE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.stderr, env=env, text=True, bufsize=1)
        self.started += 1
        return self.process

    def close(self) -> None:
        """Stop the child (it exits at the end of its input; killed if it does not)."""
        if self.process is None:
            return
        process, self.process = self.process, None
        try:
            if process.stdin:
                process.stdin.close()
            process.wait(timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
        if self.stderr:
            self.stderr.close()

    def _last_words(self) -> str:
        """The last line the dead child wrote on stderr (TensorFlow's ``Check failed: ...`` line, say)."""
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().decode(errors="replace").splitlines() if line.strip()]
        fatal = [line for line in lines if FATAL_LINE.search(line)]
        return fatal[-1][:240] if fatal else ""

    def check(self, request: Request) -> str | None:
        """Load ``request`` in the child: None when it loads and runs once, else the one-line error text."""
        process = self.process if self.process is not None and self.process.poll() is None else self._start()
        answer: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            answer.append(process.stdout.readline())

        try:
            assert process.stdin is not None
            process.stdin.write(request.to_json() + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child died; its exit status says how, below
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(self.timeout)
        if reader.is_alive():
            process.kill()
            process.wait()
            self.close()
            return (f"{request.ref}: loading and running it once took longer than {self.timeout:g} s; stopped "
                    "(a hostile or damaged model file?)")
        line = answer[0] if answer else ""
        if line.strip():
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                reply = {"error": f"{request.ref}: the loading process answered {line.strip()[:100]!r}"}
            return None if reply.get("ok") else str(reply["error"]).replace("\n", " ")
        code = process.wait()
        words = self._last_words()
        self.close()
        if code < 0:
            what = _signal_name(code)
            cause = {"SIGKILL": " (killed: out of memory?)", "SIGABRT": " (TensorFlow aborted)",
                     "SIGSEGV": " (segmentation fault)"}.get(what, "")
            return (f"{request.ref}: TensorFlow crashed while loading this file, in a separate process: {what}"
                    f"{cause}{': ' + words if words else ''}; refused (damaged or hostile model file)")
        return (f"{request.ref}: the loading process ended with exit code {code} without an answer"
                f"{': ' + words if words else ''}; refused (damaged or hostile model file)")


_passed: set[tuple] = set()  # fingerprints of files that loaded in a child during this process


def fingerprint(ref: str, input_shape: Sequence[int] | None, allow_code: bool) -> tuple:
    """The file (or every file of a SavedModel folder) by path, inode, size and modification time, with the options."""
    path = Path(ref).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = tuple((str(f), f.stat().st_ino, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return stats, tuple(input_shape or ()), allow_code


def probe(ref: str, input_shape: Sequence[int] | None = None, allow_code: bool = False,
          timeout: float = DEFAULT_TIMEOUT) -> None:
    """Load ``ref`` in a fresh child process first; raise the one-line :class:`UserError` when it fails there.

    A file that loaded in a child once is not loaded there again by the same process while it is
    unchanged (same inode, size and modification time: a notebook or a test opening it again).
    """
    key = fingerprint(ref, input_shape, allow_code)
    if key in _passed:
        return
    with Prober(timeout) as prober:
        error = prober.check(Request(ref, tuple(input_shape) if input_shape else None, allow_code))
    if error is not None:
        raise UserError(error)
    _passed.add(key)
