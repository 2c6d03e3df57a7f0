"""Preprocessing: what a network expects of its input pixels, and the recipes that get them there.

:class:`InputSpec` is the contract between a weight file and the data side: channel order,
per-channel mean and std on the 0..255 scale, and input size.  Each weight format in
``tfbench.weights`` declares one; normalisation code reads it instead of hard-coding.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    """What a network expects: ``(pixel[channel_order] - mean) / std``, pixels on the 0..255 scale."""

    channel_order: str  # "RGB" or "BGR"
    mean: tuple[float, float, float]  # in channel_order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size: int = 224

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")


#: Keras' "caffe" mode (VGG16/19, ResNet50 from Caffe): RGB->BGR, subtract the ImageNet mean.
CAFFE = InputSpec("BGR", (103.939, 116.779, 123.68))
#: Keras' "tf" mode: scale to [-1, 1].
TF = InputSpec("RGB", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))
#: Keras' "torch" mode: scale to [0, 1], then ImageNet mean/std.
TORCH = InputSpec("RGB", (0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255))
MODES = {"caffe": CAFFE, "tf": TF, "torch": TORCH}
