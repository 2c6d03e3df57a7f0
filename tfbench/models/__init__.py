"""Models: architectures written as data, built as explicit-variable ``tf.Module``\\ s and as Keras 3 models.

- :mod:`~tfbench.models.vgg19`, :mod:`~tfbench.models.lenet5`, :mod:`~tfbench.models.mlp`: each two ways
  (a ``tf.Module`` with its own ``tf.Variable``\\ s, and a Keras model with the same layer names);
- :mod:`~tfbench.models.zoo`: AlexNet, ResNets, GoogLeNet for counting (exercises 3.1, 3.2);
- :mod:`~tfbench.models.blocks`: the small conv/dense blocks of the fusion experiments;
- :mod:`~tfbench.models.registry`: ``get(name, impl=..., input_size=..., ...)``, the one way commands build a model.

Models never import :mod:`tfbench.data` or a command module.
"""

from tfbench.models.registry import NAMES, get, input_size_error

__all__ = ["NAMES", "get", "input_size_error"]
