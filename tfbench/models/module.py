"""What the explicit-variable models share: a ``tf.Module`` whose layers are dicts of ``tf.Variable``\\ s.

A subclass creates ``self.kernels`` and ``self.biases`` (layer name -> variable, in layer order)
and writes :meth:`layers`, which runs the network step by step; calling the module runs all
layers and returns float32 logits, whatever dtype the layers computed in.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import tensorflow as tf

WeightDict = dict[str, tuple[np.ndarray, np.ndarray]]


class ExplicitModule(tf.Module):
    """A network as explicit variables and ``tf.nn`` ops: nothing hidden in layers."""

    kernels: dict[str, tf.Variable]
    biases: dict[str, tf.Variable]

    def layers(self, images: tf.Tensor) -> Iterator[tuple[str, tf.Tensor]]:
        """Run the network step by step, yielding ``(layer name, output)`` after every layer."""
        raise NotImplementedError

    @tf.Module.with_name_scope
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        """Float32 logits for a batch of images (16-bit compute dtypes are cast back here)."""
        for _, x in self.layers(images):
            pass
        return self.logits(tf.cast(x, tf.float32))

    def logits(self, x: tf.Tensor) -> tf.Tensor:
        """The last layer's float32 output as the module's result (a subclass may name it)."""
        return x

    def get_weights(self) -> WeightDict:
        """The current weights as a NumPy weight dict, in layer order."""
        return {name: (kernel.numpy(), self.biases[name].numpy()) for name, kernel in self.kernels.items()}

    def count_params(self) -> int:
        """Number of trainable parameters."""
        return sum(int(np.prod(v.shape)) for v in self.trainable_variables)
