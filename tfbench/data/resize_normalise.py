"""ResizeNormalise: the input pipeline's resize, uint8 rounding and normalisation as one C++ op;
DecodeCropResizeNormalise: the same after the JPEG decode, for a whole batch in one op.

Operator fusion applied to the data side (``custom_ops/resize_normalise/resize_normalise.cc``).
After decoding, the TFRecord pipeline spent its time in ``tf.image.resize``, a rounding step
and, per batch, a normalisation (cast, channel reversal, mean subtraction) whose kernels each
wrote their whole result to memory.  The fused kernel computes the same numbers in one pass
over each output row, while the decoded window is still in cache: bit-identical in caffe mode
(VGG19's; tested), within one float32 ulp in tf and torch modes.

``DecodeCropResizeNormalise`` goes one step further: it takes a batch of JPEG strings, decodes
each image's crop window with TensorFlow's own JPEG code (``tensorflow::jpeg::Uncompress``, what
``decode_and_crop_jpeg`` runs), and resizes and normalises it straight into the batch tensor: no
map function per image, no tensor per image, no copy into a batch (``custom_ops/decode_resize_normalise/
decode_resize_normalise.cc``).  The TFRecord reader's default for the crop-first recipes.

Each op is its own library, with its own needs (one library per op, as tensorflow/custom-op
does): ``resize_normalise`` needs only TensorFlow's framework; ``decode_resize_normalise`` also
needs TensorFlow's kernel library (``libtensorflow_cc`` and the JPEG headers the wheel ships), so
a TensorFlow without those loses the batch decoder and keeps the resize op.

Why by hand: this is the point of the exercise (a fused operator, measured), and TensorFlow has
no op that resizes and normalises in one pass.  Where the library cannot be built (no C++
compiler), each op falls back to the TensorFlow ops it replaces, after one warning: the same backend
rule as every custom op (:mod:`tfbench.operators.backend`, ``$TFBENCH_OPS_BACKEND``).  The batch decoder's
fallback decodes each image's window with ``tf.image`` ops and resizes it with :func:`resize_normalise`
(the same pixels), one image at a time (``tf.map_fn``).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from tfbench.data import preprocess as pp
from tfbench.data.images import ORDERS
from tfbench.operators import backend as backend_rule
from tfbench.operators import build
from tfbench.plumbing.errors import UserError

LIBRARY = "resize_normalise"  # custom_ops/resize_normalise/: ResizeNormalise, CropResizeNormalise
FALLBACK = "tf.image.resize + round + normalise"
DECODE_LIBRARY = "decode_resize_normalise"  # custom_ops/decode_resize_normalise/: DecodeCropResizeNormalise
DECODE_FALLBACK = "tf.image.decode_and_crop_jpeg + ResizeNormalise per image"


@tf.autograph.experimental.do_not_convert
def load_library(library: str = LIBRARY) -> Any:
    """The loaded C++ op module (built on first use); raises ``build.BuildError`` if it cannot be built."""
    return build.load_once(library)


def available(library: str = LIBRARY, backend: str | None = "auto") -> bool:
    """True when ``backend`` (default ``"auto"``; None: ``$TFBENCH_OPS_BACKEND``) uses ``library``'s C++ op here.

    The first failure to build is warned about once; ``library`` is :data:`LIBRARY` or :data:`DECODE_LIBRARY`.
    """
    fallback = DECODE_FALLBACK if library == DECODE_LIBRARY else FALLBACK
    return backend_rule.resolve(library, backend, fallback=fallback) == "cpp"


def composite(pixels: Any, size: int, spec: pp.InputSpec, *, channel_order: str) -> tf.Tensor:
    """What the fused op replaces: ``tf.image.resize`` (bilinear) -> round to uint8 -> normalise."""
    return pp.tf_normalise(pp.tf_to_uint8(pp.tf_resize(pixels, size, size)), spec, channel_order=channel_order)


def resize_normalise(pixels: Any, size: int, spec: pp.InputSpec, *, channel_order: str,
                     backend: str | None = None, normalise: bool = True, box: Any = None) -> tf.Tensor:
    """``uint8 HxWx3`` pixels in ``channel_order`` -> the network input ``float32 size x size x 3`` for ``spec``.

    ``normalise=False``: the resized, rounded ``uint8`` pixels in ``spec``'s channel order, for a
    model whose first convolution does the normalisation (:mod:`tfbench.data.fold_normalise`).
    ``box``: ``[top, left, height, width]`` (int32) of the pixels to resize; the op reads them in
    place (``CropResizeNormalise``), so the window is never sliced out into a tensor of its own.
    """
    if channel_order not in ORDERS:
        raise UserError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    reverse = channel_order != spec.channel_order
    if backend_rule.resolve(LIBRARY, backend, fallback=FALLBACK) == "fallback":
        if box is not None:
            box = tf.cast(box, tf.int32)
            pixels = tf.slice(pixels, tf.stack([box[0], box[1], 0]), tf.stack([box[2], box[3], 3]))
        if not normalise:
            pixels = pp.tf_to_uint8(pp.tf_resize(pixels, size, size))
            return tf.reverse(pixels, axis=[-1]) if reverse else pixels
        return composite(pixels, size, spec, channel_order=channel_order)
    attrs = dict(out_height=size, out_width=size, mean=list(spec.mean), std=list(spec.std),
                 reverse_channels=reverse, out_type=tf.float32 if normalise else tf.uint8)
    if box is not None:
        return load_library().crop_resize_normalise(pixels, tf.cast(box, tf.int32), **attrs)
    return load_library().resize_normalise(pixels, **attrs)


def _crop_attrs(recipe: str, size: int) -> dict[str, Any]:
    """``DecodeCropResizeNormalise``'s window attrs for a crop-first recipe.

    The kind of window and its fraction of the image as a ratio of integers, so that the C++
    computes what :func:`tfbench.data.preprocess.tf_crop_window` does, integer for integer.
    """
    if recipe == "A-window":
        return dict(crop="central_square", crop_size=size, crop_of=pp.resize_size(size))
    if recipe == "A-window-v2":
        return dict(crop="central_square_v2", crop_size=size, crop_of=pp.resize_size(size))
    if recipe == "B":
        return dict(crop="central_fraction", crop_size=7, crop_of=8)  # pp.CROP_FRACTION, exactly
    raise UserError(f"recipe {recipe!r} resizes before it crops; the batch decoder needs one of "
                    f"{', '.join(pp.CROP_FIRST)}")


def _margin(recipe: str, whole_image: bool) -> int:
    """Pixels decoded around the window: none for the exact-window recipes, the whole image on request."""
    if whole_image:
        return 2**31 - 1
    return 0 if recipe in pp.EXACT_WINDOW else pp.JPEG_MARGIN


def decode_crop_resize_normalise(jpegs: Any, recipe: str, spec: pp.InputSpec, *, normalise: bool = True,
                                 whole_image: bool = False, parallel: bool = True, names: Any = None,
                                 backend: str | None = None) -> tf.Tensor:
    """A batch of JPEG strings ``[N]`` -> ``float32 [N, size, size, 3]`` network input, in one C++ op.

    Per image: the recipe's crop window decoded with its margin, resized, rounded and normalised
    in place into the batch (``DecodeCropResizeNormalise``): the pixels of
    ``resize_normalise(*tf_decode_window_box(jpeg, recipe), ...)``, bit for bit, without a
    tensor per image or a batch copy.  ``normalise=False``: ``uint8`` pixels in ``spec``'s order.
    ``whole_image``: decode every image whole, not just its window (the same pixels; for comparison).
    ``parallel``: share the batch's images out over TensorFlow's intra-op threads (else one thread).
    ``names``: the images' names ``[N]`` (the records' file names), used only to name a bad image in
    the error.  ``backend``: the backend rule (:mod:`tfbench.operators.backend`); the fallback decodes and
    resizes one image at a time with the ops of the per-image path (the same pixels, slower).
    """
    attrs = _crop_attrs(recipe, spec.size)  # checks the recipe on either backend
    jpegs = tf.convert_to_tensor(jpegs, tf.string)
    if not available(DECODE_LIBRARY, backend):
        return _decode_fallback(jpegs, recipe, spec, normalise=normalise, whole_image=whole_image, backend=backend)
    names = tf.constant([], tf.string) if names is None else tf.convert_to_tensor(names, tf.string)
    dct = pp.recipe_dct(recipe) or "INTEGER_FAST"  # "" is TensorFlow's default, INTEGER_FAST
    return load_library(DECODE_LIBRARY).decode_crop_resize_normalise(
        jpegs, names, **attrs, margin=_margin(recipe, whole_image),
        dct_method=dct, out_height=spec.size, out_width=spec.size, mean=list(spec.mean), std=list(spec.std),
        reverse_channels=spec.channel_order != "RGB", out_type=tf.float32 if normalise else tf.uint8,
        parallel=parallel)


def _decode_fallback(jpegs: tf.Tensor, recipe: str, spec: pp.InputSpec, *, normalise: bool, whole_image: bool,
                     backend: str | None) -> tf.Tensor:
    """``DecodeCropResizeNormalise``'s pixels from TensorFlow's JPEG ops, one image at a time."""
    resize_backend = "fallback" if backend == "fallback" else None  # "cpp" asked for the decoder only

    def one(jpeg: tf.Tensor) -> tf.Tensor:
        if whole_image:
            window = pp.tf_decode_window(jpeg, recipe, size=spec.size, fast=False)
            return resize_normalise(window, spec.size, spec, channel_order="RGB", normalise=normalise,
                                    backend=resize_backend)
        decoded, box = pp.tf_decode_window_box(jpeg, recipe, size=spec.size)
        return resize_normalise(decoded, spec.size, spec, channel_order="RGB", normalise=normalise, box=box,
                                backend=resize_backend)

    if jpegs.shape.rank == 0:
        return one(jpegs)
    dtype = tf.float32 if normalise else tf.uint8
    return tf.map_fn(one, jpegs, fn_output_signature=tf.TensorSpec([spec.size, spec.size, 3], dtype))
