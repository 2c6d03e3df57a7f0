"""Data-parallel training past one machine (course exercise 5.3).

- :mod:`~tfbench.distributed.training`: strategies, data, the training loop, checkpoints;
- :mod:`~tfbench.distributed.cluster`: ``TF_CONFIG``, free ports on 127.0.0.1, a process supervisor;
- :mod:`~tfbench.distributed.data`: three ways to shard the input between workers;
- :mod:`~tfbench.distributed.service`: one ``tf.data`` service pipeline shared by several trainers;
- :mod:`~tfbench.distributed.estimate`: what a ring all-reduce costs on N machines;
- :mod:`~tfbench.distributed.profile`: the all-reduce share of a step, read from a profiler trace;
- :mod:`~tfbench.distributed.cli`: the command ``python -m tfbench.distributed`` on top of them.
"""
