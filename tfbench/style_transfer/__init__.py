"""The style-transfer lab (exercise 3.9): pixels optimised with Adam or L-BFGS and the transform net trained
(:mod:`.optimise`), and its pictures (:mod:`.pictures`).  The losses and the net are in :mod:`tfbench.models`.

May import: every layer below it (docs/architecture.md), never a command.
"""
