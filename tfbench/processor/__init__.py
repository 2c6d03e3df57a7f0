"""The deep-learning processor of the course's chapters 6 and 7, as data, programmed and simulated.

- :mod:`~tfbench.processor.spec`: a processor as a TOML file (memories, links, compute units, clock, cores);
- :mod:`~tfbench.processor.language`: the course's ``move`` / ``compute`` / ``loop`` / ``sync`` programs, parsed;
- :mod:`~tfbench.processor.simulator`: runs a program on a processor (cycles, bytes per path, busy units, timeline);
- :mod:`~tfbench.processor.workload`: a built Keras model's layers as the shapes the compiler tiles;
- :mod:`~tfbench.processor.compiler`: a model's layers lowered to tiled programs that fit the memories;
- :mod:`~tfbench.processor.sweep`, :mod:`~tfbench.processor.roofline`, :mod:`~tfbench.processor.amdahl`:
  exercises 6.8/6.9, 6.10/6.13 and 6.2 on top of them;
- :mod:`~tfbench.processor.experiments`: each ``dlp`` subcommand worked out, then its outputs written.

Imports: ``tfbench.plumbing`` (errors, files, paths), ``tfbench.reporting`` (tables, summaries),
``tfbench.timing`` (tables, the JSON report), ``tfbench.models`` (the loader, counting) and, for the
CPU-measured shares of exercise 6.2 only, ``tfbench.inspection.roofline``; nothing imports TensorFlow at
module level.  The command is ``python -m tfbench.dlp`` (docs/processor.md works the exercises through).
"""
