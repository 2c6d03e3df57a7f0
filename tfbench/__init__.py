"""tfbench: a TensorFlow 2 operator and graph-engineering workbench.

Every concept of "AI Computing Systems" chapters 3-5 (using a framework, and how a
framework works inside) as a small module you can run with ``python -m tfbench.<name>``
and look at in TensorBoard.  ``python -m tfbench`` lists the experiments.

TensorFlow's C++ INFO/WARNING chatter is silenced by default (``TF_CPP_MIN_LOG_LEVEL=2``)
so command output stays readable; export the variable yourself to see it again.
"""

import os as _os
import sys as _sys

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

if _sys.argv[:1] == ["-m"]:  # python -m tfbench.<command>: a Ctrl-C while its imports run ends it at once
    from tfbench.plumbing.errors import exit_on_interrupt_while_starting as _quiet_start

    _quiet_start()


def __getattr__(name: str):
    """``tfbench.inspect_model`` loads the inspection stack only when first used (``import tfbench`` stays instant)."""
    if name == "inspect_model":
        from tfbench.inspection.api import inspect_model

        return inspect_model
    raise AttributeError(f"module 'tfbench' has no attribute {name!r}")
