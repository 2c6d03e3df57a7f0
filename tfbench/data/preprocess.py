"""Preprocessing: what a network expects of its input pixels, and the recipes that get them there.

Course exercises 4.6 (two evaluation crops) and 5.4 (Keras preprocessing modes).

:class:`InputSpec` is the contract between a weight file and the data side: channel order,
per-channel mean and std on the 0..255 scale, and input size.  Each weight format in
``tfbench.data.weights`` declares one; normalisation code reads it instead of hard-coding.

The geometric recipes (each in NumPy with OpenCV or PIL resizing, and in-graph with ``tf.image``):

- ``"A"``: resize to 256x256, then centre crop 224x224 (4.6, the first crop);
- ``"A-aspect"``: resize the shorter side to 256 keeping the aspect ratio, then centre crop
  224x224: what ImageNet evaluation actually uses;
- ``"B"``: centre crop 0.875 of the height and width, then resize to 224x224 (4.6, the second crop);
- ``"A-window"``: A-aspect's region cropped *before* resizing: the central square of 224/256 of
  the shorter side, resized to 224x224.  tensorflow/models' ImageNet eval crop
  (``_decode_and_center_crop``): only the window needs decoding, and the resize writes 224x224
  pixels instead of 256xN, so it is the cheapest recipe in the TFRecord pipeline.  Its sample
  points sit up to half a source pixel from A-aspect's, which without antialiasing can change
  single pixels on sharp edges a lot (tens of grey levels), though not the picture.

- ``"A-window-v2"``: tensorflow/models' current eval crop, ``official.vision.ops.preprocess_ops.
  center_crop_image_v2`` (the ``official.vision`` classification input's eval path): the same
  square side as A-window, ``int(0.875 * shorter side)``, but offsets ``int((H - 0.875 * shorter
  side) / 2)`` from the *unrounded* side in float32, one pixel before A-window's
  ``(H - side + 1) // 2`` except when ``0.875 * shorter side`` is whole and ``H - side`` even
  (500x375: A-window starts at row 24, column 86; v2 at 23, 85).  Decoded with
  ``tf.image.decode_and_crop_jpeg`` over exactly the window and TensorFlow's default DCT method
  (``INTEGER_FAST``), then ``tf.image.resize`` bilinear.  The in-graph fast path
  (:func:`tf_decode_recipe`) is bit-identical to it (tested against a copy of its lines).

A and B keep the same central 87.5% of the image (224/256 = 0.875): they differ only in where
the resampling happens, so their outputs differ by the resizer alone.  B and A-window crop
first, which is why ``tf.image.decode_and_crop_jpeg`` can skip decoding the border
(:func:`tf_decode_recipe`; the TFRecord reader takes that path for them).

How far the versions differ (measured in ``tests/test_preprocess.py``): OpenCV's bilinear
``INTER_LINEAR`` and ``tf.image.resize(antialias=False)`` sample the same points and agree to
about one grey level; PIL's ``BILINEAR`` *antialiases* when it shrinks (its filter widens
with the scale), so it matches ``tf.image.resize(antialias=True)`` instead, and both differ
from the non-antialiased resizers by several levels on sharp edges.

Normalisation (:func:`normalise`, :func:`tf_normalise`) takes an image *with its channel
order* (``tfbench.data.images.Image``), reorders the channels to the spec's order, then applies
the mean and std.  The three Keras modes (:data:`MODES`) follow
``keras.applications.imagenet_utils.preprocess_input`` operation by operation, so the results
are bit-identical to it (NumPy, and ``tf_normalise`` run eagerly).  Inside a ``tf.function``
grappler's constant folding rewrites ``x / 127.5`` as ``x * (1 / 127.5)``, which changes the last
bit of some results: the graph you write is not the graph that runs (see ``tfbench.graphs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from tfbench.data.images import ORDERS, Image
from tfbench.plumbing.errors import UserError

if TYPE_CHECKING:  # annotations only: TensorFlow is imported where the in-graph functions run
    import tensorflow as tf

TensorLike = Any  # a tf.Tensor, or anything tf.convert_to_tensor takes


@dataclass(frozen=True)
class InputSpec:
    """What a network expects: ``(pixel[channel_order] - mean) / std``, pixels on the 0..255 scale.

    ``keras_mode`` (``"caffe"``, ``"tf"``, ``"torch"`` or None) only changes the floating-point
    order of operations to Keras' own, so :data:`MODES` reproduce ``preprocess_input`` bit for bit;
    it is not part of equality.
    """

    channel_order: str  # "RGB" or "BGR"
    mean: tuple[float, float, float]  # in channel_order
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size: int = 224
    keras_mode: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.keras_mode not in (None, "caffe", "tf", "torch"):
            raise ValueError(f"keras_mode must be None, 'caffe', 'tf' or 'torch', got {self.keras_mode!r}")


#: Keras' "caffe" mode (VGG16/19, ResNet50 from Caffe): RGB->BGR, subtract the ImageNet mean.
CAFFE = InputSpec("BGR", (103.939, 116.779, 123.68), keras_mode="caffe")
#: Keras' "tf" mode: scale to [-1, 1].
TF = InputSpec("RGB", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5), keras_mode="tf")
#: Keras' "torch" mode: scale to [0, 1], then ImageNet mean/std.
TORCH = InputSpec("RGB", (0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255),
                  keras_mode="torch")
MODES = {"caffe": CAFFE, "tf": TF, "torch": TORCH}

# Keras' torch-mode constants on the 0..1 scale (dividing ours by 255 would round differently).
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)

RECIPES = {
    "A": "resize to 256x256, centre crop 224x224",
    "A-aspect": "resize shorter side to 256 (aspect kept), centre crop 224x224",
    "B": "centre crop 0.875 of height and width, resize to 224x224",
    "A-window": "centre crop a square of 224/256 of the shorter side, resize to 224x224 "
                "(tensorflow/models' legacy _decode_and_center_crop)",
    "A-window-v2": "as A-window with center_crop_image_v2's offsets and TensorFlow's default DCT "
                   "(tensorflow/models official.vision eval input)",
}
CROP_FIRST = ("B", "A-window", "A-window-v2")  # recipes that crop before they resize
#: recipes that decode exactly their window with TensorFlow's default DCT method, as their reference does
#: (no margin: bit-identical to ``decode_and_crop_jpeg`` over the window, not to a full decode)
EXACT_WINDOW = ("A-window-v2",)
DEFAULT_DCT = "INTEGER_ACCURATE"  # agrees with PIL and OpenCV
BACKENDS = ("cv2", "pil")
CROP_FRACTION = 0.875  # 224 / 256
JPEG_MARGIN = 2  # extra source pixels decoded around a crop window: the reach of 2x chroma upsampling


def _check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise UserError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")


def resize_size(size: int = 224) -> int:
    """The side the A recipes resize to before cropping ``size``: 256 for 224."""
    return int(round(size / CROP_FRACTION))


# ----------------------------------------------------------------------------- NumPy recipes


def resize(pixels: np.ndarray, height: int, width: int, backend: str = "cv2") -> np.ndarray:
    """Bilinear resize of ``HxWxC uint8``: OpenCV ``INTER_LINEAR`` (no antialias) or PIL ``BILINEAR`` (antialiased)."""
    if backend == "cv2":
        import cv2

        return cv2.resize(np.ascontiguousarray(pixels), (width, height), interpolation=cv2.INTER_LINEAR)
    if backend == "pil":
        from PIL import Image as PILImage

        return np.asarray(PILImage.fromarray(np.ascontiguousarray(pixels)).resize(
            (width, height), PILImage.Resampling.BILINEAR))
    raise UserError(f"unknown resize backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def center_crop(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """The central ``height x width`` window (offsets rounded down, as ``tf.image.resize_with_crop_or_pad``)."""
    h, w = pixels.shape[:2]
    if height > h or width > w:
        raise UserError(f"cannot centre crop {height}x{width} out of a {h}x{w} image (height x width)")
    top, left = (h - height) // 2, (w - width) // 2
    return pixels[top:top + height, left:left + width]


def central_fraction_window(height: int, width: int, fraction: float = CROP_FRACTION) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of ``tf.image.central_crop(image, fraction)``, computed the same way."""
    top = int((height - height * fraction) / 2)
    left = int((width - width * fraction) / 2)
    return top, left, height - 2 * top, width - 2 * left


def central_square_window(height: int, width: int, size: int = 224) -> tuple[int, int, int, int]:
    """``(top, left, side, side)`` of A-window: tensorflow/models' ``_decode_and_center_crop`` window."""
    side = min(height, width) * size // resize_size(size)  # int(224 / 256 * shorter side), exactly
    return (height - side + 1) // 2, (width - side + 1) // 2, side, side


def central_square_window_v2(height: int, width: int, fraction: float = CROP_FRACTION) -> tuple[int, int, int, int]:
    """``(top, left, side, side)`` of ``center_crop_image_v2``: float32 crop side, offsets truncated from float32."""
    crop = np.float32(fraction) * np.float32(min(height, width))
    top = int((np.float32(height) - crop) / np.float32(2.0))
    left = int((np.float32(width) - crop) / np.float32(2.0))
    return top, left, int(crop), int(crop)


def shorter_side_size(height: int, width: int, side: int) -> tuple[int, int]:
    """New ``(height, width)`` with the shorter side ``side`` and the aspect ratio kept (rounded)."""
    scale = side / min(height, width)
    return max(side, int(round(height * scale))), max(side, int(round(width * scale)))


def recipe_pixels(pixels: np.ndarray, recipe: str = "A", *, size: int = 224, backend: str = "cv2") -> np.ndarray:
    """Apply ``recipe`` to ``HxWxC uint8`` pixels in any channel order; returns ``size x size x C uint8``."""
    _check_recipe(recipe)
    h, w = pixels.shape[:2]
    if recipe == "A":
        side = resize_size(size)
        return np.ascontiguousarray(center_crop(resize(pixels, side, side, backend), size, size))
    if recipe == "A-aspect":
        nh, nw = shorter_side_size(h, w, resize_size(size))
        return np.ascontiguousarray(center_crop(resize(pixels, nh, nw, backend), size, size))
    if recipe == "B":
        top, left, ch, cw = central_fraction_window(h, w)
    elif recipe == "A-window-v2":
        top, left, ch, cw = central_square_window_v2(h, w, size / resize_size(size))
    else:
        top, left, ch, cw = central_square_window(h, w, size)
    return resize(pixels[top:top + ch, left:left + cw], size, size, backend)


def apply_recipe(image: Image, recipe: str = "A", *, size: int = 224, backend: str = "cv2") -> Image:
    """Apply ``recipe`` with NumPy and ``backend``'s resizer; the channel order travels with the result."""
    return image.replace(recipe_pixels(image.pixels, recipe, size=size, backend=backend),
                         note=f"recipe {recipe} ({backend})")


# ----------------------------------------------------------------------------- NumPy normalisation


def _require_image(image: object, what: str) -> Image:
    if not isinstance(image, Image):
        raise UserError(f"{what} needs a tfbench.data.images.Image (pixels + channel order), got "
                        f"{type(image).__name__}; wrap arrays with "
                        "tfbench.data.images.from_array(array, channel_order)")
    return image


def normalise_array(pixels: np.ndarray, channel_order: str, spec: InputSpec) -> np.ndarray:
    """Float32 network input from pixels (``...xHxWx3``, 0..255) whose order you state explicitly."""
    if channel_order not in ORDERS:
        raise UserError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    x = np.asarray(pixels)
    if x.shape[-1] != 3:
        raise UserError(f"expected 3 channels in the last axis, got shape {x.shape}")
    if channel_order != spec.channel_order:
        x = x[..., ::-1]
    x = x.astype(np.float32)  # always a copy: the in-place steps below never touch the caller's array
    mode = spec.keras_mode
    if mode == "tf":  # Keras: x /= 127.5; x -= 1
        x /= 127.5
        x -= 1.0
    elif mode == "torch":  # Keras: x /= 255; x -= mean; x /= std
        x /= 255.0
        x -= np.asarray(_TORCH_MEAN, np.float32)
        x /= np.asarray(_TORCH_STD, np.float32)
    else:  # caffe (std 1) and any weight file's spec
        x -= np.asarray(spec.mean, np.float32)
        if spec.std != (1.0, 1.0, 1.0):
            x /= np.asarray(spec.std, np.float32)
    return x


def normalise(image: Image, spec: InputSpec) -> np.ndarray:
    """Float32 ``HxWx3`` network input: channels reordered from ``image.channel_order`` to the spec's, then mean/std."""
    image = _require_image(image, "normalise")
    return normalise_array(image.pixels, image.channel_order, spec)


def normalise_batch(images: Sequence[Image], spec: InputSpec) -> np.ndarray:
    """:func:`normalise` each image and stack them into ``NxHxWx3`` (all must have the same size)."""
    arrays = [normalise(_require_image(im, "normalise_batch"), spec) for im in images]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise UserError(f"images have different sizes {sorted(shapes)}; apply a recipe first")
    return np.stack(arrays)


def prepare(image: Image, spec: InputSpec, recipe: str = "A-aspect", *, backend: str = "cv2") -> np.ndarray:
    """Recipe to ``spec.size`` then :func:`normalise`: one image to one float32 network input."""
    return normalise(apply_recipe(image, recipe, size=spec.size, backend=backend), spec)


def denormalise(x: np.ndarray, spec: InputSpec, channel_order: str = "RGB") -> np.ndarray:
    """Undo :func:`normalise` (for viewing): float network input back to ``uint8`` pixels in ``channel_order``."""
    pixels = np.asarray(x, np.float32) * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)
    if channel_order != spec.channel_order:
        pixels = pixels[..., ::-1]
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- in-graph (tf.image) versions


def tf_resize(pixels: TensorLike, height: TensorLike, width: TensorLike, *, antialias: bool = False) -> tf.Tensor:
    """``tf.image.resize`` bilinear to float32 (half-pixel centres, like OpenCV; antialias like PIL if asked)."""
    import tensorflow as tf

    return tf.image.resize(pixels, tf.stack([height, width]), method="bilinear", antialias=antialias)


def tf_recipe(pixels: TensorLike, recipe: str = "A", *, size: int = 224, antialias: bool = False) -> tf.Tensor:
    """In-graph ``recipe`` on one decoded ``HxWx3`` image; float32 ``size x size x 3`` on the 0..255 scale."""
    import tensorflow as tf

    _check_recipe(recipe)
    pixels = tf.convert_to_tensor(pixels)
    shape = tf.shape(pixels)
    h, w = shape[0], shape[1]
    if recipe == "A":
        side = resize_size(size)
        resized = tf_resize(pixels, side, side, antialias=antialias)
        return tf.image.resize_with_crop_or_pad(resized, size, size)
    if recipe == "A-aspect":
        nh, nw = tf_shorter_side_size(h, w, resize_size(size))
        resized = tf_resize(pixels, nh, nw, antialias=antialias)
        return tf.image.resize_with_crop_or_pad(resized, size, size)
    if recipe == "B":
        cropped = tf.image.central_crop(pixels, CROP_FRACTION)
    else:
        top, left, h, w = tf.unstack(tf_crop_window(h, w, recipe, size=size))
        cropped = tf.image.crop_to_bounding_box(pixels, top, left, h, w)
    return tf_resize(cropped, size, size, antialias=antialias)


def tf_shorter_side_size(height: TensorLike, width: TensorLike, side: int) -> tuple[tf.Tensor, tf.Tensor]:
    """In-graph :func:`shorter_side_size`."""
    import tensorflow as tf

    hf, wf = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    scale = side / tf.minimum(hf, wf)
    nh = tf.maximum(side, tf.cast(tf.round(hf * scale), tf.int32))
    nw = tf.maximum(side, tf.cast(tf.round(wf * scale), tf.int32))
    return nh, nw


def tf_crop_window(height: TensorLike, width: TensorLike, recipe: str, *, size: int = 224) -> list[tf.Tensor]:
    """``[top, left, h, w]`` (int32) of the source pixels a crop-first recipe reads, for ``decode_and_crop_jpeg``.

    ``"B"``: ``tf.image.central_crop``'s window.  ``"A-window"``: :func:`central_square_window`.
    ``"A-aspect"``: the rows and columns that resize-then-crop samples from (bilinear needs the
    neighbours of every sample point).
    """
    import tensorflow as tf

    if recipe == "B":
        hf, wf = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
        top = tf.cast((hf - hf * CROP_FRACTION) / 2, tf.int32)
        left = tf.cast((wf - wf * CROP_FRACTION) / 2, tf.int32)
        return tf.stack([top, left, height - 2 * top, width - 2 * left])
    if recipe == "A-window":
        side = tf.minimum(height, width) * size // resize_size(size)
        return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])
    if recipe == "A-window-v2":  # center_crop_image_v2, in its float32 arithmetic
        hf, wf = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
        crop = size / resize_size(size) * tf.minimum(hf, wf)
        top, left = tf.cast((hf - crop) / 2.0, tf.int32), tf.cast((wf - crop) / 2.0, tf.int32)
        side = tf.cast(crop, tf.int32)
        return tf.stack([top, left, side, side])
    if recipe == "A-aspect":
        (y0, y1, _), (x0, x1, _) = _aspect_axes(height, width, size)
        return tf.stack([y0, x0, y1 - y0, x1 - x0])
    raise UserError(f"recipe {recipe!r} resizes before it crops; only B, A-window and A-aspect have a crop window")


def _aspect_axes(height, width, size: int):
    """Per axis: first source row/column needed, one past the last, and the first sample point.

    ``tf.image.resize`` (half-pixel centres) samples output row ``i`` of an ``n``-row resize of
    ``H`` rows at source row ``(i + 0.5) * H / n - 0.5``; the crop keeps rows ``top .. top+size-1``.
    """
    import tensorflow as tf

    nh, nw = tf_shorter_side_size(height, width, resize_size(size))
    axes = []
    for full, resized in ((height, nh), (width, nw)):
        full_f, resized_f = tf.cast(full, tf.float64), tf.cast(resized, tf.float64)
        step = full_f / resized_f
        first = (tf.cast((resized - size) // 2, tf.float64) + 0.5) * step - 0.5
        last = first + (size - 1) * step
        start = tf.maximum(0, tf.cast(tf.floor(first), tf.int32))
        stop = tf.minimum(full, tf.cast(tf.floor(last), tf.int32) + 2)
        axes.append((start, stop, (first, step)))
    return axes


def tf_decode_recipe(jpeg_bytes: TensorLike, recipe: str = "A-aspect", *, size: int = 224, antialias: bool = False,
                     fast: bool | None = None, dct_method: str | None = None) -> tf.Tensor:
    """Decode JPEG bytes to 3 channels (RGB) and apply ``recipe``; float32 ``size x size x 3``.

    With ``fast``, crop-first recipes decode only the pixels they keep
    (``tf.image.decode_and_crop_jpeg``).  ``"B"`` and ``"A-window"`` then resize the window,
    exactly as the slow path.  ``"A-aspect"`` resizes *before* cropping, so its sample points fall
    between source pixels; ``tf.image.crop_and_resize`` samples the decoded window at exactly
    those points, so the fast path gives the slow path's pixels (to float rounding; without
    antialiasing only).  ``crop_and_resize`` is slower on CPU than the decoding it saves, so by
    default (``fast=None``) only the crop-first recipes (:data:`CROP_FIRST`) take the fast path.
    ``dct_method`` defaults to ``"INTEGER_ACCURATE"``, which makes TensorFlow's decoder agree with
    PIL and OpenCV (TensorFlow's default, the faster ``INTEGER_FAST``, differs by a few levels);
    ``"A-window-v2"`` defaults to TensorFlow's default, as tensorflow/models does.
    """
    import tensorflow as tf

    _check_recipe(recipe)
    dct_method = recipe_dct(recipe) if dct_method is None else dct_method
    fast = (recipe in CROP_FIRST) if fast is None else fast
    if fast and recipe in CROP_FIRST:
        window = tf_decode_window(jpeg_bytes, recipe, size=size, dct_method=dct_method)
        return tf_resize(window, size, size, antialias=antialias)
    if fast and recipe == "A-aspect" and not antialias:
        shape = tf.image.extract_jpeg_shape(jpeg_bytes)
        height, width = shape[0], shape[1]
        decoded, (y0, x0, y1, x1) = _decode_with_margin(jpeg_bytes, height, width, recipe, size, dct_method)
        (_, _, (fy, sy)), (_, _, (fx, sx)) = _aspect_axes(height, width, size)
        hc, wc = tf.cast(y1 - y0 - 1, tf.float64), tf.cast(x1 - x0 - 1, tf.float64)
        ty, tx = (fy - tf.cast(y0, tf.float64)) / hc, (fx - tf.cast(x0, tf.float64)) / wc
        box = tf.cast(tf.stack([ty, tx, ty + (size - 1) * sy / hc, tx + (size - 1) * sx / wc]), tf.float32)
        return tf.image.crop_and_resize(tf.cast(decoded, tf.float32)[None], box[None], [0], [size, size])[0]
    pixels = tf.io.decode_jpeg(jpeg_bytes, channels=3, dct_method=dct_method)
    return tf_recipe(pixels, recipe, size=size, antialias=antialias)


def recipe_dct(recipe: str) -> str:
    """The JPEG DCT method a recipe decodes with by default ("" is TensorFlow's own default, INTEGER_FAST)."""
    return "" if recipe in EXACT_WINDOW else DEFAULT_DCT


def _decode_with_margin(jpeg_bytes, height, width, recipe: str, size: int, dct_method: str):
    """Decode ``recipe``'s crop window plus :data:`JPEG_MARGIN` pixels around it: the pixels and ``[y0, x0, y1, x1)``.

    The margin: chroma upsampling at the edge of a cropped decode replicates edge pixels instead
    of reading the neighbours, so without it the outermost pixels of the window differ.
    """
    import tensorflow as tf

    top, left, h, w = tf.unstack(tf_crop_window(height, width, recipe, size=size))
    margin = 0 if recipe in EXACT_WINDOW else JPEG_MARGIN
    y0, x0 = tf.maximum(0, top - margin), tf.maximum(0, left - margin)
    y1, x1 = tf.minimum(height, top + h + margin), tf.minimum(width, left + w + margin)
    decoded = tf.image.decode_and_crop_jpeg(jpeg_bytes, tf.stack([y0, x0, y1 - y0, x1 - x0]),
                                            channels=3, dct_method=dct_method)
    return decoded, (y0, x0, y1, x1)


def tf_decode_window(jpeg_bytes: TensorLike, recipe: str, *, size: int = 224, fast: bool = True,
                     dct_method: str | None = None) -> tf.Tensor:
    """The crop window of a crop-first recipe (:data:`CROP_FIRST`), decoded: ``uint8 hxwx3`` RGB, not resized.

    ``fast``: decode only the window plus :data:`JPEG_MARGIN` pixels around it
    (``tf.image.decode_and_crop_jpeg``), then cut the margin off: the same pixels as decoding the
    whole image and slicing (tested).  :data:`EXACT_WINDOW` recipes decode the window alone, as
    their reference does.  ``dct_method`` defaults to :func:`recipe_dct`.
    """
    import tensorflow as tf

    if not fast:
        dct_method, _, (top, left, h, w) = _crop_first_window(jpeg_bytes, recipe, size, dct_method)
        pixels = tf.io.decode_jpeg(jpeg_bytes, channels=3, dct_method=dct_method)
        return tf.slice(pixels, tf.stack([top, left, 0]), tf.stack([h, w, 3]))
    decoded, box = tf_decode_window_box(jpeg_bytes, recipe, size=size, dct_method=dct_method)
    return tf.slice(decoded, tf.stack([box[0], box[1], 0]), tf.stack([box[2], box[3], 3]))


def _crop_first_window(jpeg_bytes: TensorLike, recipe: str, size: int, dct_method: str | None
                       ) -> tuple[str, tf.Tensor, list[tf.Tensor]]:
    """The recipe's DCT method, the image's shape and the crop window ``[top, left, height, width]`` in it."""
    import tensorflow as tf

    if recipe not in CROP_FIRST:
        raise UserError(f"recipe {recipe!r} resizes before it crops; crop-first recipes: {', '.join(CROP_FIRST)}")
    shape = tf.image.extract_jpeg_shape(jpeg_bytes)
    window = tf.unstack(tf_crop_window(shape[0], shape[1], recipe, size=size))
    return (recipe_dct(recipe) if dct_method is None else dct_method), shape, window


def tf_decode_window_box(jpeg_bytes: TensorLike, recipe: str, *, size: int = 224,
                         dct_method: str | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`tf_decode_window` (``fast``) before its slice: the decoded pixels with their margin and the
    window's ``[top, left, height, width]`` inside them, for an op that reads the window in place."""
    import tensorflow as tf

    dct_method, shape, (top, left, h, w) = _crop_first_window(jpeg_bytes, recipe, size, dct_method)
    decoded, (y0, x0, _, _) = _decode_with_margin(jpeg_bytes, shape[0], shape[1], recipe, size, dct_method)
    return decoded, tf.stack([top - y0, left - x0, h, w])


def tf_normalise(pixels: TensorLike, spec: InputSpec, *, channel_order: str) -> tf.Tensor:
    """In-graph :func:`normalise_array`: float network input from pixels in ``channel_order`` (required)."""
    import tensorflow as tf

    if channel_order not in ORDERS:
        raise UserError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
    x = tf.cast(pixels, tf.float32)
    if channel_order != spec.channel_order:
        x = tf.reverse(x, axis=[-1])
    mode = spec.keras_mode
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        return (x / 255.0 - tf.constant(_TORCH_MEAN, tf.float32)) / tf.constant(_TORCH_STD, tf.float32)
    x = x - tf.constant(spec.mean, tf.float32)
    if spec.std != (1.0, 1.0, 1.0):
        x = x / tf.constant(spec.std, tf.float32)
    return x


def tf_to_uint8(pixels: TensorLike) -> tf.Tensor:
    """Round float pixels on the 0..255 scale to uint8, as the NumPy recipes' resizers return them.

    The TFRecord pipeline batches uint8 rather than float32: a quarter of the bytes to copy into
    the batch, and the normalised float batch is then written once, by :func:`tf_normaliser`.
    """
    import tensorflow as tf

    return tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)


def tf_normaliser(spec: InputSpec, *, channel_order: str, xla: bool = True) -> Callable[[TensorLike], tf.Tensor]:
    """:func:`tf_normalise` for ``spec`` as a function of a pixel batch; with ``xla``, compiled by XLA.

    Why XLA: TensorFlow runs the cast, the channel reversal and the mean subtraction as three
    Eigen kernels, and Eigen is slow at reversing or broadcasting over an innermost axis of 3.
    XLA fuses them into one loop over the batch.  On the 2-core AMD EPYC we measured 0.49 ms per
    224x224 image with the three kernels and 0.09 ms compiled (``uint8 32x224x224x3`` in,
    float32 out).  Caffe mode stays bit-identical to Keras' ``preprocess_input`` (a subtraction);
    in tf and torch modes XLA divides by multiplying with the reciprocal, which moves some results
    by one float32 ulp (< 5e-7; tested).  One compilation per batch shape (the last, smaller batch
    is a second one).
    """
    import tensorflow as tf

    if channel_order not in ORDERS:
        raise UserError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")

    def normalise_pixels(pixels: TensorLike) -> tf.Tensor:
        return tf_normalise(pixels, spec, channel_order=channel_order)

    return tf.function(normalise_pixels, jit_compile=True) if xla else normalise_pixels
