"""One exception type for mistakes a user can fix, and the CLI wrapper that prints it.

Bad paths, bad shapes and bad flags raise :class:`UserError`; every ``python -m tfbench.*``
command prints it as one line on stderr and exits with code 2 (like argparse does).
Programming errors are not caught: their tracebacks are what a developer needs.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable, Sequence


class UserError(Exception):
    """A problem with the user's input: the message says what was given and what was expected."""


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run ``main(argv)`` and exit: 0 on success, 2 with a one-line message on :class:`UserError`.

    Ctrl-C ends with the line "interrupted" and exit code 130 (what shells use for SIGINT).
    """
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    # The work is done: a Ctrl-C while the interpreter shuts down (which resets Python's own
    # handler) must not kill a finished run with SIGINT's default action.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code or 0)


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
