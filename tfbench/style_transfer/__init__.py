"""The style-transfer lab (exercise 3.9): pixels optimised with Adam or L-BFGS and the transform net trained
(:mod:`.optimise`), its pictures (:mod:`.pictures`), and the two runs of ``python -m tfbench.style`` stage by
stage, with their PNG files and TensorBoard runs (:mod:`.runs`).  The losses and the net are in :mod:`tfbench.models`.

May import: every layer below it (docs/architecture.md), never a command.
"""
