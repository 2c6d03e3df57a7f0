"""``python -m tfbench.distributed``: see :mod:`tfbench.distributed.cli`."""

import sys

from tfbench.distributed.cli import main
from tfbench.errors import run_cli

if __name__ == "__main__":
    run_cli(main, sys.argv[1:])
