"""Run ``python -m MODULE ARGS`` with one machine fault injected under a folder (used by tests/test_faults.py).

    python tests/fault_injection.py FAULT FOLDER MODULE [ARGS ...]

FAULT is one of:

- ``enospc``: every file opened for writing under FOLDER fails with ``OSError(ENOSPC)`` (a full disk,
  as Python's own file writes see it), and so do folders made there;
- ``tf-enospc``: ``tf.io.TFRecordWriter`` writing under FOLDER fails the way TensorFlow reports a full
  disk, ``ResourceExhaustedError: <path>; No space left on device``;
- ``erofs``: files and folders made under FOLDER fail with ``OSError(EROFS)`` (a read-only mount);
- ``eacces``: the same with ``PermissionError(EACCES)``.

The command runs in this process through :mod:`runpy`, exactly as ``python -m`` would run it.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import runpy
import sys

FAULTS = {"enospc": errno.ENOSPC, "tf-enospc": errno.ENOSPC, "erofs": errno.EROFS, "eacces": errno.EACCES}


def _under(path: object, folder: str) -> bool:
    """True for a path inside ``folder`` (not ``folder`` itself)."""
    try:
        return os.path.abspath(os.fspath(path)).startswith(folder + os.sep)
    except TypeError:
        return False


def install(fault: str, folder: str) -> None:
    """Make writes under ``folder`` fail with ``fault``."""
    folder = os.path.abspath(folder)
    code = FAULTS[fault]
    if fault == "tf-enospc":
        import tensorflow as tf

        class FullDiskWriter(tf.io.TFRecordWriter):
            def __init__(self, path, options=None):
                super().__init__(path, options)
                self._path = str(path)

            def write(self, record):
                if _under(self._path, folder):
                    raise tf.errors.ResourceExhaustedError(None, None, f"{self._path}; No space left on device")
                super().write(record)

        tf.io.TFRecordWriter = FullDiskWriter
        return

    def fail(path: object) -> OSError:
        return (PermissionError if code == errno.EACCES else OSError)(code, os.strerror(code), os.fspath(path))

    real_open, real_mkdir = io.open, os.mkdir

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and _under(file, folder):
            raise fail(file)
        return real_open(file, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if _under(path, folder) and not os.path.isdir(path):
            raise fail(path)
        return real_mkdir(path, *args, **kwargs)

    builtins.open = io.open = open_
    os.mkdir = mkdir


if __name__ == "__main__":
    fault, target, module, *args = sys.argv[1:]
    install(fault, target)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
