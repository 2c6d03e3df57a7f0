"""One exception type for mistakes a user can fix, and the CLI wrapper that prints it.

Bad paths, bad shapes and bad flags raise :class:`UserError`; every ``python -m tfbench.*``
command prints it as one line on stderr and exits with code 2 (like argparse does).  Faults of
the machine (a full disk, a read-only or forbidden folder, too little memory) end the same way,
in one line that names the path or size and the cure (:mod:`tfbench.plumbing.faults`).  Ctrl-C ends with
"interrupted" and exit code 130, whenever it comes.  Programming errors are not caught: their
tracebacks are what a developer needs.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable, NoReturn, Sequence


class UserError(Exception):
    """A problem with the user's input: the message says what was given and what was expected."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)`` and exit: 0 on success, 2 with a one-line message on :class:`UserError`.

    Environment faults (:func:`tfbench.plumbing.faults.describe`) print one ``error:`` line and exit 2 too.
    Ctrl-C ends with the line "interrupted" and exit code 130 (what shells use for SIGINT), also
    when the interrupt surfaces as another exception (an import cut short, say).
    """
    global _sigint_seen
    _sigint_seen = False
    if signal.getsignal(signal.SIGINT) in (_interrupted_while_starting, signal.default_int_handler):
        signal.signal(signal.SIGINT, _keyboard_interrupt)
    try:
        code = main(argv)
    except UserError as err:
        _error_line(str(err))
    except BaseException as err:  # noqa: BLE001 - sorted below: interrupts, machine faults, bugs
        if isinstance(err, KeyboardInterrupt) or (_sigint_seen and not isinstance(err, SystemExit)):
            # A second SIGINT (a repeated Ctrl-C, or one still pending from a thread that had it blocked)
            # must not interrupt the exit itself: that would end the process by SIGINT, not with 130.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            print("interrupted", file=sys.stderr)
            if getattr(main, "__module__", None) == "__main__":  # run_cli ends the program: see _exit_now
                _exit_now(130)
            sys.exit(130)
        if isinstance(err, Exception):
            from tfbench.plumbing import faults

            line = faults.describe(err)  # names flags from the options the command's parser read
            if line is not None:
                _error_line(line)
        raise
    # The work is done: a Ctrl-C while the interpreter shuts down (which resets Python's own
    # handler) must not kill a finished run with SIGINT's default action.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code or 0)


_sigint_seen = False


def _keyboard_interrupt(signum: int, frame: object) -> None:
    """Python's own SIGINT handler, remembering that it ran (whatever exception the interrupt turns into)."""
    global _sigint_seen
    _sigint_seen = True
    raise KeyboardInterrupt


def _exit_now(code: int) -> NoReturn:
    """End the program with ``code`` now: exit handlers run, output is flushed, the interpreter's shutdown is skipped.

    After a Ctrl-C, CPython ends a program by SIGINT itself (exit status -2, not 130) when the
    KeyboardInterrupt once passed through code it ran from C, an import cut short say, even though
    :func:`run_cli` handled it; ``os._exit`` keeps the promised 130.  The exit handlers (the stderr
    filter's, the process pools') still run first.
    """
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first line of an error's message that says what went wrong, at most ``limit`` characters.

    TensorFlow's errors keep their text in ``.message``; an error raised while AutoGraph traces
    a function starts with "in user code:" and the frames, and ends with the original
    "NotImplementedError: ..." line, which is the one returned.  An empty message gives the type's name.
    """
    text = str(getattr(err, "message", None) or err).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        line = type(err).__name__
    elif lines[0] == "in user code:":
        line = lines[-1]
    else:
        line = lines[0]
    return line if limit is None else line[:limit]


def _error_line(message: str) -> NoReturn:
    """Print ``error: message`` and exit 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """SIGINT while a command's modules are still importing: nothing to clean up yet, so end now."""
    try:
        os.write(2, b"interrupted\n")
    finally:
        os._exit(130)


def exit_on_interrupt_while_starting() -> None:
    """Until :func:`run_cli` starts ``main``, Ctrl-C prints "interrupted" and exits 130, not an import traceback."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
