"""Training: the loop, its schedule and checkpoints (:mod:`.loops`), LeNet-5 and the MLP on MNIST
(:mod:`.lenet`), mixed precision (:mod:`.mixed_precision`), sparse training (:mod:`.sparsity`), one-shot
pruning of any Keras model (:mod:`.one_shot`), and the classic models on the digits (:mod:`.classic_mnist`).

May import: plumbing, reporting, timing, operators, models, data, rewriting.
"""
