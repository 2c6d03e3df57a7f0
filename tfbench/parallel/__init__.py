"""Data-parallel training past one machine (course exercise 5.3).

- :mod:`~tfbench.parallel.training`: strategies, data, the training loop, checkpoints;
- :mod:`~tfbench.parallel.cluster`: ``TF_CONFIG``, free ports on 127.0.0.1, a process supervisor;
- :mod:`~tfbench.parallel.launcher`: the local workers of ``train --strategy multiworker``;
- :mod:`~tfbench.parallel.netns`: a network namespace of its own for a local cluster;
- :mod:`~tfbench.parallel.data`: three ways to shard the input between workers;
- :mod:`~tfbench.parallel.service`: one ``tf.data`` service pipeline shared by several trainers;
- :mod:`~tfbench.parallel.estimate`: what a ring all-reduce costs on N machines;
- :mod:`~tfbench.parallel.profile`: the all-reduce share of a step, read from a profiler trace;
- :mod:`~tfbench.distributed`: the command ``python -m tfbench.distributed`` on top of them.
"""
