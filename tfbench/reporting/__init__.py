"""What tfbench shows: TensorBoard writers for graphs, scalars, images, text and HParams (:mod:`.summaries`),
graphs renamed so they read like the diagrams (:mod:`.graph_views`), and plain text tables (:mod:`.tables`).

May import: :mod:`tfbench.plumbing`.
"""
