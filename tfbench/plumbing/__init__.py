"""Process plumbing every command shares: argument pieces (:mod:`.cli`), user errors and the one-line exit
(:mod:`.errors`), faults of the machine named with their cure (:mod:`.faults`), files written whole or not
at all (:mod:`.files`), and where shipped files, the cache and run folders are (:mod:`.paths`).

The lowest layer: imports nothing of tfbench (docs/architecture.md).
"""
