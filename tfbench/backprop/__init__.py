"""The neural-network basics of the course's chapter 2 (and exercise 3.11), each one run and checked.

Read the modules in this order; each answers its exercises and writes its answer to TensorBoard:

- :mod:`~tfbench.backprop.perceptron`: one neuron with two inputs on AND, OR, NAND and XOR, its
  decision line, and the two-layer MLP that learns XOR (1.3); the parameters of a 33-512-10 MLP (2.2);
- :mod:`~tfbench.backprop.activations`: five activation functions on one set of axes and their ranges
  (2.4), the derivatives of sigmoid and of ``v / sqrt(1 + v^2)`` in closed form against the tape (2.6, 2.7);
- :mod:`~tfbench.backprop.new_activation`: an activation function with its gradient written by hand
  and registered from Python, gradient-checked and trained (2.10);
- :mod:`~tfbench.backprop.adder`: a 4-bit adder learned by an MLP in TensorFlow and by the same MLP in
  NumPy, with a hand-written backward pass checked against TensorFlow's (2.11, 2.12);
- :mod:`~tfbench.backprop.momentum`: momentum in [0, 1] and in [-1, 0] on one problem (2.9);
- :mod:`~tfbench.backprop.optimizers`: plain SGD against momentum, Nesterov, Adam and a learning-rate
  schedule on MNIST digits, epochs and seconds to a stated accuracy (3.11; ImageNet for 3.12);
- :mod:`~tfbench.backprop.pictures`: the one helper that saves a figure as a PNG and a TensorBoard image.

Run them with ``python -m tfbench.basics <exercise>`` (``--help`` lists them).  This package may import
:mod:`tfbench.models`, :mod:`tfbench.data` and the shared modules (errors, files, summaries, tables),
never a command module.
"""
