"""The losses of neural style transfer (Gatys et al., 2016; course exercise 3.9 and the course lab), top to bottom.

A picture is made by gradient descent on its pixels (``python -m tfbench.style optimise``) or by a
transform net trained on the same losses (``python -m tfbench.style realtime``).  Everything the
optimiser sees is here:

1. **features**: VGG19's convolutions (:class:`~tfbench.models.vgg19.VGG19Module` without its top)
   read at a few layers, on pixels in ``[0, 1]`` normalised in-graph the way the weights expect;
2. **content loss**: the squared difference of the ``conv4_2`` features of the picture and of the
   content photo: it keeps *what* is where (shapes, edges at the scale of a 16-pixel receptive cell);
3. **Gram matrix**: ``G[c, d] = sum_xy F[x, y, c] F[x, y, d] / (H W)``, the correlations between
   channels with the positions summed away: it keeps *how* things look (colours, strokes, textures),
   not where;
4. **style loss**: the squared difference of the Gram matrices of picture and style image at
   ``conv1_1 ... conv5_1``, averaged over those layers: small layers match colour and fine texture,
   deep ones larger motifs;
5. **total variation**: the mean absolute difference between neighbouring pixels
   (``tf.image.total_variation`` per pixel): it smooths away the high-frequency noise the other two leave;
6. **total** = ``content_weight * content + style_weight * style + tv_weight * tv``.

Content and style differences are *relative*, ``||x - target||^2 / ||target||^2`` (Gatys et al. use
``1/2 ||x - target||^2`` and ``1/(4 N^2 M^2) ||G - A||^2``): the same loss weights then work for
feature maps of any scale, the seeded random filters' as well as trained ones from a ``.mat`` or
``.h5`` file, and at any image size.  0 means equal; the content photo's style loss against the style
image is the yardstick a result must beat.  With *random* VGG19 weights the features are untrained
filters: the style term still matches colour statistics and some texture, but not painted strokes,
and the content term keeps only rough layout (see docs/style.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import tensorflow as tf

from tfbench.models.vgg19 import VGG19Module

CONTENT_LAYER = "conv4_2"
STYLE_LAYERS: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
MIN_SIZE = 16  # conv5_1 sits after four 2x2 pools: 16x16 pixels give it a 1x1 map


@dataclass(frozen=True)
class LossWeights:
    """How much each term counts in the total."""

    content: float = 1.0
    style: float = 100.0
    tv: float = 10.0


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
    """``(N, H, W, C) -> (N, C, C)``: channel correlations, summed over positions and divided by ``H * W``."""
    features = tf.cast(features, tf.float32)
    positions = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float32)
    return tf.einsum("nhwc,nhwd->ncd", features, features) / positions


def relative_error(value: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """``||value - target||^2 / ||target||^2``: a squared error that does not depend on the features' scale."""
    value = tf.cast(value, tf.float32)
    return tf.reduce_sum(tf.square(value - target)) / (tf.reduce_sum(tf.square(target)) + 1e-12)


def content_loss(features: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Relative squared difference of two feature maps of the same shape."""
    return relative_error(features, target)


def style_loss(grams: dict[str, tf.Tensor], target_grams: dict[str, tf.Tensor]) -> tf.Tensor:
    """Relative squared difference of Gram matrices, averaged over the style layers."""
    terms = [relative_error(grams[name], target_grams[name]) for name in target_grams]
    return tf.add_n(terms) / float(len(terms))


def total_variation(images: tf.Tensor) -> tf.Tensor:
    """Mean absolute difference between neighbouring pixels (``tf.image.total_variation`` per pixel and channel)."""
    shape = tf.shape(images)
    pixels = tf.cast(shape[0] * shape[1] * shape[2] * shape[3], tf.float32)
    return tf.reduce_sum(tf.image.total_variation(images)) / pixels


class FeatureExtractor(tf.Module):
    """VGG19's convolutions read at the content and style layers, on RGB pixels in ``[0, 1]``.

    ``channel_order``, ``mean`` and ``std`` are the weights' input convention (on the 0..255
    scale, as :class:`tfbench.data.preprocess.InputSpec` gives them); the picture is normalised
    in the graph, so its gradient flows back to the pixels.
    """

    def __init__(self, vgg: VGG19Module, *, channel_order: str = "BGR",
                 mean: Sequence[float] = (103.939, 116.779, 123.68), std: Sequence[float] = (1.0, 1.0, 1.0),
                 content_layer: str = CONTENT_LAYER, style_layers: Sequence[str] = STYLE_LAYERS):
        super().__init__(name="features")
        self.vgg = vgg
        self.channel_order = channel_order
        self.mean = tf.constant(mean, tf.float32)
        self.std = tf.constant(std, tf.float32)
        self.content_layer = content_layer
        self.style_layers = tuple(style_layers)
        self.wanted = {content_layer, *self.style_layers}
        order = [spec.name for spec in vgg.specs if spec.kind == "conv"]
        known = set(order)
        unknown = sorted(self.wanted - known)
        if unknown:
            raise ValueError(f"VGG19 has no layer(s) {unknown}; its convolutions are {sorted(known)}")
        self.last = max(self.wanted, key=order.index)  # VGG19 stops there

    def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """``{layer: features}`` for the wanted layers of pixels in ``[0, 1]``."""
        return self.features(self.normalise(images))

    def normalise(self, images: tf.Tensor) -> tf.Tensor:
        """RGB ``[0, 1]`` pixels -> the weights' input: 0..255 scale, channel order, mean, std."""
        x = tf.convert_to_tensor(images, tf.float32) * 255.0
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        return (x - self.mean) / self.std

    def features(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        """Run VGG19 on normalised input, stopping after the deepest wanted layer."""
        found: dict[str, tf.Tensor] = {}
        for name, output in self.vgg.layers(x, last=self.last):
            if name in self.wanted:
                found[name] = output
                if len(found) == len(self.wanted):
                    break
        return found


@dataclass
class Targets:
    """What the picture is pulled towards: the content photo's features, the style image's Gram matrices."""

    content: tf.Tensor
    grams: dict[str, tf.Tensor]


def targets(extractor: FeatureExtractor, content_image: tf.Tensor, style_image: tf.Tensor) -> Targets:
    """Compute the targets once (images ``(1, H, W, 3)`` in ``[0, 1]``; the style image may have another size)."""
    content = extractor(content_image)[extractor.content_layer]
    style = extractor(style_image)
    return Targets(tf.cast(content, tf.float32), {name: gram_matrix(style[name]) for name in extractor.style_layers})


def losses(extractor: FeatureExtractor, images: tf.Tensor, target: Targets,
           weights: LossWeights = LossWeights()) -> dict[str, tf.Tensor]:
    """Every term, unweighted, and the weighted ``total``: ``{"content", "style", "tv", "total"}``."""
    features = extractor(images)
    terms = {
        "content": content_loss(features[extractor.content_layer], target.content),
        "style": style_loss({name: gram_matrix(features[name]) for name in extractor.style_layers}, target.grams),
        "tv": total_variation(images),
    }
    terms["total"] = weights.content * terms["content"] + weights.style * terms["style"] + weights.tv * terms["tv"]
    return terms
