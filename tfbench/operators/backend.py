"""One backend rule for every custom op: the C++ kernel, or the TensorFlow ops it stands for.

Each op's Python wrapper takes ``backend=`` with the same three values, and the process-wide
default comes from one environment variable, ``$TFBENCH_OPS_BACKEND``:

- ``"cpp"``: the compiled kernel (built on first use); failing to build is an error;
- ``"fallback"``: the composite of TensorFlow ops with the same semantics (no custom node in graphs);
- ``"auto"`` (default): the kernel when it can be built here, else the fallback after one
  ``RuntimeWarning`` per op that says why (a machine without a C++ compiler still runs everything).
"""

from __future__ import annotations

import os
import warnings

import tensorflow as tf

from tfbench.operators import build
from tfbench.plumbing.errors import UserError

BACKENDS = ("auto", "cpp", "fallback")
ENV_BACKEND = "TFBENCH_OPS_BACKEND"

#: op library -> why "auto" chose the fallback in this process (the failure is warned about once).
fallback_reasons: dict[str, str] = {}


def default_backend() -> str:
    """The backend named by ``$TFBENCH_OPS_BACKEND`` (``auto`` when unset)."""
    value = os.environ.get(ENV_BACKEND, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise UserError(f"{ENV_BACKEND}={value!r} is not a backend; expected one of {', '.join(BACKENDS)}")
    return value


# Not converted by AutoGraph: called while a tf.function traces, it builds and loads the library
# in plain Python (AutoGraph would try, and fail noisily, to convert subprocess and file calls).
@tf.autograph.experimental.do_not_convert
def resolve(library: str, backend: str | None = None, *, fallback: str = "TensorFlow ops") -> str:
    """``"cpp"`` or ``"fallback"``: what ``backend`` (or the default) means for op ``library`` on this machine."""
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "fallback" or (backend == "auto" and library in fallback_reasons):
        return "fallback"
    try:
        build.load_once(library)
    except build.BuildError as err:
        if backend == "cpp":
            raise
        fallback_reasons[library] = str(err)
        warnings.warn(f"{library}: {err}; using the fallback {fallback} (same semantics, no custom node in graphs)",
                      RuntimeWarning, stacklevel=3)
        return "fallback"
    return "cpp"
