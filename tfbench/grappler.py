"""Grappler's switches and what the runtime says about them: shared by the graph and fusion experiments.

``grappler_options`` turns passes off for a block (and restores exactly what was there);
``onednn_enabled`` says whether TensorFlow runs its oneDNN kernels in this process, which
decides what the remapper can fuse (on AVX2-only CPUs TensorFlow leaves oneDNN off by default;
on AVX-512 CPUs it turns it on).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import tensorflow as tf

#: Ops that move or name values rather than compute: listed after the compute ops in count tables.
BOOKKEEPING_OPS = frozenset({"_Arg", "_Retval", "Const", "ReadVariableOp", "NoOp", "Identity"})


@contextlib.contextmanager
def grappler_options(**options: Any) -> Iterator[None]:
    """Set ``tf.config.optimizer`` experimental options for the block, then restore the previous ones.

    The public API can only add or overwrite keys, not go back to "unset" (which is not the
    same as ON for every pass), so the context's option dict is saved and put back as it was.
    Functions instantiated inside the block keep their graphs; call them inside it to time them.
    """
    from tensorflow.python.eager import context

    ctx = context.context()
    saved = dict(ctx._optimizer_experimental_options)  # no public getter for the raw, unset-aware dict
    tf.config.optimizer.set_experimental_options(options)
    try:
        yield
    finally:
        ctx._optimizer_experimental_options = saved
        ctx._thread_local_data.function_call_options = None  # what set_experimental_options does too


def onednn_enabled() -> bool:
    """Whether this process runs TensorFlow's oneDNN (``_MklNative*``) kernels; ``TF_ENABLE_ONEDNN_OPTS`` decides."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())
