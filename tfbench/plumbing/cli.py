"""The command-line pieces every ``python -m tfbench.<name>`` shares: common options, quiet start-up.

One spelling and one default for each common option, shown in every ``--help``::

    --logdir DIR     where runs and reports go (default: logs)
    --seed N         weights and data order
    --repeats N      timed rounds of a benchmark
    --batch-size N   images per step
    --image-size N   square input size of an image model
    --no-progress    no progress bars
    --verbose        keep TensorFlow's own start-up log lines

Commands parse their arguments before importing TensorFlow, so ``--help`` and argument
errors answer at once.  :func:`quiet_tensorflow` then keeps TensorFlow's C++ start-up
chatter (absl's pre-init warning, oneDNN and CUDA notices, ``cuInit`` on machines without a
GPU) off the terminal unless ``--verbose`` asks for it; Python warnings and errors still show.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Protocol, Sequence

from tfbench.plumbing import faults, paths

DEFAULT_LOGDIR = str(paths.DEFAULT_LOGDIR)
#: how usage lines name a command: ``python -m tfbench.<prog>``; the ``tfbench`` console command sets "tfbench "
PROG_PREFIX = "python -m tfbench."


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show each option's default in ``--help`` and keep the description's line breaks.

    Flags (default False), options without a default (None) and help texts that already say
    their default are left as written, so no option reads "(default: None)".
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``prog: error: ... (see --help)``), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` for ``python -m tfbench.<prog>`` that shows defaults and errs in one line."""
    return Parser(prog=f"{PROG_PREFIX}{prog}", description=description, formatter_class=HelpFormatter)


def _whole_number(text: str, minimum: int, rule: str) -> int:
    """``text`` as an int of at least ``minimum``, or an argparse error saying ``rule``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (``--repeats 0`` is refused, not run)."""
    return _whole_number(text, 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0."""
    return _whole_number(text, 0, "must be 0 or more")


def positive_float(text: str) -> float:
    """argparse type: a number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def comma_numbers(text: str, flag: str, kind: type = int) -> list:
    """A flag's comma-separated positive numbers of type ``kind`` (``--sizes 16,32``); a UserError naming ``flag``
    if any is not one (checked after parsing, so the message can name the flag)."""
    from tfbench.plumbing.errors import UserError

    try:
        values = [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values):
        what = "integers" if kind is int else "numbers"
        raise UserError(f"{flag}: expected comma-separated positive {what}, got {text!r}")
    return values


def add_logdir(p: argparse.ArgumentParser, help: str = "where runs and reports go") -> None:
    """``--logdir DIR``: where runs (``DIR/<experiment>/<timestamp>/``) and reports go."""
    p.add_argument("--logdir", default=DEFAULT_LOGDIR, help=help)


def add_seed(p: argparse.ArgumentParser, default: int = 0, help: str = "seed of the weights and the data order"
             ) -> None:
    """``--seed N``: seeds weights and data order."""
    p.add_argument("--seed", type=non_negative_int, default=default, help=help)


def add_repeats(p: argparse.ArgumentParser, default: int, help: str = "timed rounds (warm-ups not counted)") -> None:
    """``--repeats N``: timed rounds (warm-ups are extra)."""
    p.add_argument("--repeats", type=positive_int, default=default, help=help)


def add_batch_size(p: argparse.ArgumentParser, default: int, help: str = "images per step", dest: str | None = None
                   ) -> None:
    """``--batch-size N``: images per step (``dest`` keeps a command's own attribute name)."""
    p.add_argument("--batch-size", type=positive_int, default=default, help=help,
                   **({"dest": dest} if dest else {}))


class SizeRule(Protocol):
    """What :func:`add_image_size` needs of a model's size rule (``tfbench.models.registry.SIZE_RULES``)."""

    def describe(self) -> str: ...

    def check(self, name: str, size: int) -> str | None: ...


def add_image_size(p: argparse.ArgumentParser, default: int | None, *, model: str, rule: SizeRule,
                   dest: str | None = None, help: str = "square input size") -> None:
    """``--image-size N``: square input size, checked against the model's own ``rule`` (VGG19: a multiple of 32).

    The command passes the rule (``registry.SIZE_RULES["vgg19"]``): argument plumbing knows no model.
    """

    def image_size(text: str) -> int:
        value = positive_int(text)
        problem = rule.check(model, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    p.add_argument("--image-size", type=image_size, default=default,
                   help=f"{help} ({model}: {rule.describe()})", **({"dest": dest} if dest else {}))


def add_model_source(p: argparse.ArgumentParser) -> None:
    """``--input-shape`` and ``--allow-code``: what :func:`tfbench.models.load.load` needs besides MODEL."""
    p.add_argument("--input-shape", default=None,
                   help="input shape without the batch dimension, like 224,224,3 (when a model file leaves it free)")
    p.add_argument("--allow-code", action="store_true",
                   help="let MODEL run its own code: package.module:factory (imports and runs it), a Keras Lambda "
                        "layer, a SavedModel with ops outside the allowlist (file I/O, printing, dataset readers; "
                        "see docs/security.md)")


MODEL_HELP = ("a model name, a .keras or .h5 file, a SavedModel folder, or package.module:factory "
              "(with --allow-code)")


def add_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars (logs and CI)."""
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_verbose(p: argparse.ArgumentParser) -> None:
    """``--verbose``: keep TensorFlow's own start-up log lines."""
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own start-up log lines")


def check_output_dir(path: str | Path, what: str = "--logdir") -> Path:
    """Refuse, before any work starts, an output folder that cannot be one (a file, under a file, not writable).

    A folder still to be made is checked where it would be made: its nearest existing parent.
    """
    from tfbench.plumbing.errors import UserError

    path = Path(path)
    existing = None
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{what} {path}: {parent} is a file, not a folder")
        if parent.exists():
            existing = parent
            break
    if existing is not None and not os.access(existing, os.W_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        if read_only:
            raise UserError(f"{what} {path}: {existing} is on a read-only file system; choose another folder")
        folder = "the folder is" if existing == path else f"{existing} is"
        raise UserError(f"{what} {path}: {folder} not writable")
    return path


def check_input_file(path: str | Path, what: str) -> Path:
    """Refuse, before any work starts, an input file that is missing, a folder, or unreadable."""
    from tfbench.plumbing.errors import UserError

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder, expected a file")
    if not path.exists():
        raise UserError(f"{what} {path}: no such file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} {path}: the file is not readable")
    return path


def check_memory(*, flag: str, value: int, per_unit: int, fixed: int = 0, what: str) -> None:
    """Refuse, before allocating, work that needs ``fixed + value * per_unit`` bytes when memory cannot hold it.

    ``what`` says what the bytes are for ("the batch and VGG19's weights and activations"); the error
    names ``flag`` and the largest value that would fit.
    """
    from tfbench.plumbing.errors import UserError
    from tfbench.plumbing.faults import available_memory, human_bytes

    nbytes = fixed + value * per_unit
    available = available_memory()
    if available is None or nbytes <= available:
        return
    most = int((available - fixed) // per_unit) if per_unit else 0
    cure = f"use {flag} {most} or less" if most >= 1 else "even a value of 1 does not fit: free some memory"
    raise UserError(f"{flag} {value}: {what} need about {human_bytes(nbytes)}, more than the "
                    f"{human_bytes(available)} of memory available here; {cure}")


def value_options(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> dict[str, list[str]]:
    """Every option that takes a value, with the value(s) ``ns`` holds for it: ``{"--batch-size": ["64"]}``.

    Read from the parser's own actions (the chosen subcommand's too), so a flag without a value
    (``--quick``) is never paired with the word after it.
    """
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(ns, action.dest, None) if action.dest != argparse.SUPPRESS else None
            subparsers = [action.choices[chosen]] if chosen in action.choices else list(action.choices.values())
            for sub in subparsers:
                found.update(value_options(sub, ns))
        elif action.option_strings and action.nargs != 0 and getattr(ns, action.dest, None) is not None:
            value = getattr(ns, action.dest)
            flag = next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
            found[flag] = [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return found


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``, refuse an impossible ``--logdir`` before any work, then quiet TensorFlow's start-up.

    The order every command follows: nothing heavy is imported until the arguments are known good.
    """
    ns = parser.parse_args(argv)
    faults.remember_options(value_options(parser, ns))
    if getattr(ns, "logdir", None) is not None:
        check_output_dir(ns.logdir)
    quiet_tensorflow(getattr(ns, "verbose", False))
    return ns


def quiet_tensorflow(verbose: bool = False) -> None:
    """Keep TensorFlow's C++ start-up log lines off stderr, unless ``verbose``; call before importing it.

    ``TF_CPP_MIN_LOG_LEVEL=2`` hides INFO and WARNING lines (3 would hide real errors too, so
    we stay at 2).  Some lines come before TensorFlow reads that variable, or at error level
    although nothing is wrong (absl's "All log messages before absl::InitializeLog()", the
    ``cuInit`` failure on a machine without a GPU): :func:`filter_stderr` drops exactly those.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    filter_stderr(STARTUP_NOISE)


#: substrings of TensorFlow/XLA start-up lines that say nothing about the user's work.
STARTUP_NOISE = (
    "All log messages before absl::InitializeLog()",
    "failed call to cuInit",
    "Could not find cuda drivers",
    "cudart_stub",
    "oneDNN custom operations are on",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "TF-TRT Warning",
    # logged (at error level) when a float16 op first runs where oneDNN has no float16 kernels for this
    # CPU: TensorFlow's own kernel runs instead, with the same results; float16 timings say what it costs
    "oneDNN supports DT_HALF only on platforms with AVX-512",
)

_filter_installed = False


def filter_stderr(noise: tuple[str, ...]) -> None:
    """Drop the lines written to file descriptor 2 that contain one of ``noise``, for the rest of the process.

    C++ code writes to the file descriptor itself, so swapping ``sys.stderr`` cannot catch it:
    fd 2 becomes a pipe, and a thread copies every other line to the real stderr as it comes.
    Text ending in ``\r`` (progress bars) passes at once, and so does an unfinished line that
    cannot be a log line (they start ``I0000``, ``W...``, ``E...``, ``F...`` or ``T...``).  At exit the
    real stderr is put back and what is already in the pipe is copied; child processes that still
    hold the pipe (multiprocessing's resource tracker, say) do not keep the command waiting.
    """
    global _filter_installed
    if _filter_installed:
        return
    import atexit
    import select
    import sys
    import threading
    import time

    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    stopping = threading.Event()
    encoded = tuple(n.encode() for n in noise)

    def pump() -> None:
        pending = b""
        with os.fdopen(os.dup(real), "wb", buffering=0) as out:

            def emit(segment: bytes) -> None:
                if segment and not any(n in segment for n in encoded):
                    out.write(segment)

            def take(chunk: bytes) -> None:
                nonlocal pending
                pending += chunk
                cut = max(pending.rfind(b"\n"), pending.rfind(b"\r"))  # complete segments end at the last one
                if cut >= 0:
                    head, pending = pending[:cut + 1], pending[cut + 1:]
                    for line in head.splitlines(keepends=True):
                        emit(line)
                if pending and pending[:1] not in (b"I", b"W", b"E", b"F", b"T"):
                    emit(pending)  # an unfinished line that is no log line: show it now
                    pending = b""

            while True:
                ready, _, _ = select.select([read_end], [], [], 0.05)
                if not ready and stopping.is_set():
                    # The last lines (the command's "error: ...") may have come between the select's
                    # timeout and this check, while this thread waited for the GIL: copy what the pipe
                    # holds now.  Everything this process wrote is in it: restore() sets ``stopping``
                    # after its last write; children that still hold the pipe are not waited for.
                    deadline = time.monotonic() + 2.0  # a child that keeps writing does not keep us
                    while time.monotonic() < deadline and select.select([read_end], [], [], 0)[0]:
                        chunk = os.read(read_end, 1 << 16)
                        if not chunk:
                            break
                        take(chunk)
                    break
                if not ready:
                    continue
                chunk = os.read(read_end, 1 << 16)
                if not chunk:
                    break
                take(chunk)
            emit(pending)
        os.close(read_end)

    thread = threading.Thread(target=pump, name="tfbench-stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # our write end of the pipe is gone; children may still hold theirs
        stopping.set()  # the pump copies what is in the pipe, then stops at the first quiet 50 ms
        # Generous: on a loaded machine the pump thread may wait seconds for a core, and a last
        # "error: ..." line still in the pipe must not be lost when the process ends.
        thread.join(timeout=60)

    atexit.register(restore)
    _filter_installed = True


def tensorboard_command(logdir: str | Path) -> str:
    """The shell command that opens TensorBoard on ``logdir`` from here, whether a venv is activated or not.

    ``tensorboard`` when that name on PATH is this Python's own; else the script beside this Python
    (a venv's ``bin/tensorboard`` runs without activating the venv); else ``python -m tensorboard.main``.
    """
    import shlex
    import shutil
    import sys

    script = Path(sys.executable).parent / "tensorboard"
    found = shutil.which("tensorboard")
    folder = shlex.quote(str(logdir))
    if script.exists():
        if found and Path(found).resolve() == script.resolve():
            return f"tensorboard --logdir {folder}"
        return f"{shlex.quote(str(script))} --logdir {folder}"
    return f"{shlex.quote(sys.executable)} -m tensorboard.main --logdir {folder}"
