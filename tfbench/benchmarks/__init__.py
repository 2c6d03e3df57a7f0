"""The benchmarks ``python -m tfbench.bench NAME`` runs that belong to no single command: one module each,
``run_benchmark(argv) -> dict``, parsing its own options as a subcommand of ``bench`` does.  A benchmark
that shares a command's options lives in that command (``bench fusion`` in :mod:`tfbench.fusion`);
:data:`tfbench.bench.BENCHMARKS` is the one table of both.

The top layer of the library: may import any package, never a command; nothing imports it.
"""
