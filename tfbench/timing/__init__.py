"""Timing: the harness every benchmark uses (:mod:`.measure`), the machine a number was measured on
(:mod:`.machine`) and the report it ends in (:mod:`.report`).  ``python -m tfbench.bench NAME`` runs
the benchmarks of :mod:`tfbench.benchmarks` on top of it.

May import: :mod:`tfbench.plumbing`.  TensorFlow loads inside the functions.
"""

from tfbench.timing.machine import (
    BF16_FLAGS,
    KERNEL_FLAGS,
    ONEDNN_DEFAULT_FLAGS,
    bf16_note,
    cpu_name,
    cpuinfo,
    machine_header,
    machine_info,
    onednn_enabled,
    onednn_state,
    print_header,
    usable_cores,
)
from tfbench.timing.measure import Timing, block, compare, measure, percentile, summarise
from tfbench.timing.report import format_table, report

__all__ = ["BF16_FLAGS", "KERNEL_FLAGS", "ONEDNN_DEFAULT_FLAGS", "Timing", "bf16_note", "block", "compare", "cpu_name",
           "cpuinfo", "format_table", "machine_header", "machine_info", "measure", "onednn_enabled", "onednn_state",
           "percentile", "print_header", "report", "summarise", "usable_cores"]
