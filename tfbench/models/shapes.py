"""Problem sizes of the fusion experiments' layers (conv, dense): plain data, no TensorFlow needed to list them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class ConvShape:
    """One conv layer's problem size: NHWC input ``batch x size x size x cin``, ``kernel x kernel`` to ``cout``."""

    batch: int
    size: int
    cin: int
    cout: int
    kernel: int = 3

    @property
    def label(self) -> str:
        """A short name such as ``56x56x256->256 3x3 b1``."""
        return f"{self.size}x{self.size}x{self.cin}->{self.cout} {self.kernel}x{self.kernel} b{self.batch}"

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of the convolution ('SAME' padding, stride 1)."""
        return 2 * self.batch * self.size * self.size * self.kernel * self.kernel * self.cin * self.cout

    @property
    def bytes_moved(self) -> int:
        """float32 bytes of input + output + kernel: what one unfused elementwise pass re-reads."""
        return 4 * (self.batch * self.size * self.size * (self.cin + self.cout)
                    + self.kernel * self.kernel * self.cin * self.cout)

    def input(self, seed: int = 0) -> tf.Tensor:
        """A seeded standard-normal input batch."""
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        return tf.constant(rng.standard_normal((self.batch, self.size, self.size, self.cin), dtype=np.float32))


@dataclass(frozen=True)
class DenseShape:
    """One fully connected layer: ``batch x units_in`` times ``units_in x units_out``."""

    batch: int
    units_in: int
    units_out: int

    @property
    def label(self) -> str:
        """A short name such as ``4096->4096 b1``."""
        return f"{self.units_in}->{self.units_out} b{self.batch}"

    def input(self, seed: int = 0) -> tf.Tensor:
        """A seeded standard-normal input batch."""
        import tensorflow as tf

        rng = np.random.default_rng(seed)
        return tf.constant(rng.standard_normal((self.batch, self.units_in), dtype=np.float32))
