"""What a number was measured on: the CPU and the flags that decide kernels, oneDNN on/off and why,
threads and versions.  Every benchmark prints :func:`machine_header` first and stores
:func:`machine_info` in its JSON, so a figure never travels without its machine.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

#: CPU flags (as /proc/cpuinfo spells them) that decide which kernels TensorFlow and oneDNN pick.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                "amx_tile", "amx_bf16", "amx_int8")
#: flags for which TensorFlow (Linux x86) turns oneDNN on by default (``IsMKLEnabled`` in
#: tensorflow/core/util/util.cc: AVX512_VNNI, AVX512_BF16, AVX_VNNI or any AMX feature).
ONEDNN_DEFAULT_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
#: flags that give native bfloat16 arithmetic to oneDNN's convolutions and matmuls.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo(path: str | Path = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """``(model name, flags)`` of the first processor in /proc/cpuinfo; ("", empty) if unreadable."""
    model, flags = "", set()
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def cpu_name() -> str:
    """The CPU model string (from /proc/cpuinfo on Linux)."""
    return cpuinfo()[0] or platform.processor() or platform.machine()


def onednn_state(flags: set[str], env: str | None = None) -> tuple[bool, str]:
    """Whether TensorFlow runs oneDNN here and why: the ``TF_ENABLE_ONEDNN_OPTS`` setting or its own default.

    ``env`` defaults to the environment's ``TF_ENABLE_ONEDNN_OPTS``.  Mirrors TensorFlow's rule
    (see :data:`ONEDNN_DEFAULT_FLAGS`); :func:`machine_info` also asks TensorFlow itself.
    """
    env = os.environ.get("TF_ENABLE_ONEDNN_OPTS") if env is None else env
    if env is not None and env.strip().lower() in ("1", "true", "0", "false"):
        on = env.strip().lower() in ("1", "true")
        return on, f"TF_ENABLE_ONEDNN_OPTS={env.strip()}"
    found = [f for f in ONEDNN_DEFAULT_FLAGS if f in flags]
    if found:
        return True, f"TensorFlow's default on a CPU with {', '.join(found)}"
    return False, "TensorFlow's default on a CPU without AVX512_VNNI/AVX512_BF16/AVX_VNNI/AMX"


def bf16_note(flags: set[str]) -> str:
    """One line saying whether this CPU can make bfloat16 faster than float32, and why."""
    found = [f for f in BF16_FLAGS if f in flags]
    if found:
        return (f"this CPU has {', '.join(found)}: oneDNN runs bfloat16 convolutions and matmuls natively, so "
                "bfloat16 is faster where large ones dominate (VGG19 at 224x224, batch 8: about 1.9x forward on a "
                "2-core AVX512_BF16 EPYC, docs/precision.md); small layers (LeNet-5, VGG19 at 32x32) are not "
                "faster, often slower: casts and per-op overheads dominate there")
    return ("no bfloat16 speed-up expected on this CPU: it has neither AVX512_BF16 nor AMX_BF16, so "
            "bfloat16 is converted to float32 around every kernel (or runs slower generic code)")


def onednn_enabled() -> bool:
    """Whether this process runs TensorFlow's oneDNN (``_MklNative*``) kernels; ``TF_ENABLE_ONEDNN_OPTS`` decides."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; the machine's count where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model and kernel flags, oneDNN on/off and why,
    threads, device list, TensorFlow/Keras/Python versions."""
    import keras
    import tensorflow as tf

    model, flags = cpuinfo()
    onednn, reason = onednn_state(flags)
    try:
        reported = onednn_enabled()
        if reported != onednn:
            reason += f" (but TensorFlow reports oneDNN {'on' if reported else 'off'})"
            onednn = reported
    except (ImportError, AttributeError):  # a TensorFlow without the private probe
        pass
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    cores = usable_cores()
    devices = [d.name for d in tf.config.list_logical_devices()]
    return {
        "device": ", ".join(devices),
        "cpu": model or platform.processor() or platform.machine(),
        "cpu_flags": {f: f in flags for f in KERNEL_FLAGS},
        "cores": cores,
        "onednn": onednn,
        "onednn_reason": reason,
        "intra_op_threads": intra or cores,
        "inter_op_threads": inter or cores,
        "threads_set": {"intra_op": intra, "inter_op": inter},
        "bf16_note": bf16_note(flags),
        "tf_version": tf.__version__,
        "keras_version": keras.__version__,
        "python": platform.python_version(),
    }


def machine_header(info: dict[str, Any] | None = None) -> str:
    """The lines every benchmark prints first: CPU, kernel flags, oneDNN, threads, versions."""
    info = info or machine_info()
    flags = " ".join(f for f, present in info["cpu_flags"].items() if present) or "none of " + ", ".join(KERNEL_FLAGS)
    return "\n".join([
        f"machine: {info['cpu']} ({info['cores']} cores), flags: {flags}",
        f"oneDNN {'on' if info['onednn'] else 'off'} ({info['onednn_reason']}); threads intra-op "
        f"{info['intra_op_threads']}, inter-op {info['inter_op_threads']}; TensorFlow {info['tf_version']}, "
        f"Keras {info['keras_version']}, Python {info['python']}",
        f"bfloat16: {info['bf16_note']}",
    ])


_HEADER_PRINTED: set[str] = set()


def print_header(bench_name: str) -> dict[str, Any]:
    """Print the machine header for a benchmark about to run (once per benchmark and process); return the info."""
    info = machine_info()
    if bench_name not in _HEADER_PRINTED:
        _HEADER_PRINTED.add(bench_name)
        print(f"== {bench_name} ==")
        print(machine_header(info))
    return info
