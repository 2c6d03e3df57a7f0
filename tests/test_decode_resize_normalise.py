"""DecodeCropResizeNormalise (a batch of JPEGs -> network input in one C++ op) against the per-image ops."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image as PILImage

from tfbench.data import imagenet_val, images
from tfbench.data import preprocess as pp
from tfbench.data import resize_normalise as rn
from tfbench.plumbing.errors import UserError


def _jpeg(pixels: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", **{"quality": 90, **save})
    return buffer.getvalue()


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    """The embedded photos (landscape, portrait, square, a grayscale JPEG), some shapes with odd H - side,
    4:4:4 and 4:2:0 chroma, and a CMYK JPEG."""
    rng = np.random.default_rng(0)
    out = []
    for name in imagenet_val.EMBEDDED_PHOTOS:
        pixels = images.skimage_photo(name)
        out += [_jpeg(pixels), _jpeg(np.ascontiguousarray(np.swapaxes(pixels, 0, 1)))]  # and its transpose
    smooth = np.clip(rng.normal(128, 40, (9, 13, 3)), 0, 255).astype(np.uint8)
    for h, w in [(375, 500), (333, 500), (500, 333), (257, 259), (224, 224), (10, 600)]:
        pixels = np.asarray(PILImage.fromarray(smooth).resize((w, h), PILImage.Resampling.BICUBIC))
        out += [_jpeg(pixels), _jpeg(pixels, subsampling=0)]
    cmyk = io.BytesIO()
    PILImage.fromarray(images.skimage_photo("coffee")).convert("CMYK").save(cmyk, format="JPEG")
    return out + [cmyk.getvalue()]


def _per_image(jpeg: bytes, recipe: str, spec: pp.InputSpec, normalise: bool) -> np.ndarray:
    """The reader's per-image path: the window decoded with its margin, then CropResizeNormalise on its box."""
    decoded, box = pp.tf_decode_window_box(tf.constant(jpeg), recipe, size=spec.size)
    return rn.resize_normalise(decoded, spec.size, spec, channel_order="RGB", normalise=normalise, box=box,
                               backend="cpp").numpy()


@pytest.mark.parametrize("recipe", ["A-window", "A-window-v2", "B"])
@pytest.mark.parametrize("mode", ["caffe", "torch", "tf"])
def test_batch_op_equals_the_per_image_path_bit_for_bit(jpegs, recipe, mode):
    spec = pp.MODES[mode]
    for normalise in (True, False):
        got = rn.decode_crop_resize_normalise(tf.constant(jpegs), recipe, spec, normalise=normalise).numpy()
        assert got.shape == (len(jpegs), 224, 224, 3) and got.dtype == (np.float32 if normalise else np.uint8)
        for i, jpeg in enumerate(jpegs):
            np.testing.assert_array_equal(got[i], _per_image(jpeg, recipe, spec, normalise), err_msg=f"image {i}")


def test_batch_op_equals_the_recipe_and_a_whole_image_decode(jpegs):
    """Against the reference recipe (tf.image ops, caffe mode: bit-identical) and with the image decoded whole."""
    batch = tf.constant(jpegs[:6])
    got = rn.decode_crop_resize_normalise(batch, "A-window", pp.CAFFE).numpy()
    whole = rn.decode_crop_resize_normalise(batch, "A-window", pp.CAFFE, whole_image=True).numpy()
    np.testing.assert_array_equal(got, whole)
    for i, jpeg in enumerate(jpegs[:6]):
        pixels = pp.tf_to_uint8(pp.tf_decode_recipe(tf.constant(jpeg), "A-window", fast=False))
        np.testing.assert_array_equal(got[i], pp.tf_normalise(pixels, pp.CAFFE, channel_order="RGB").numpy())


def test_one_thread_gives_what_the_intra_op_threads_give(jpegs):
    batch = tf.constant(jpegs)
    np.testing.assert_array_equal(rn.decode_crop_resize_normalise(batch, "A-window", pp.TORCH).numpy(),
                                  rn.decode_crop_resize_normalise(batch, "A-window", pp.TORCH, parallel=False).numpy())


def test_one_image_and_an_empty_batch(jpegs):
    one = rn.decode_crop_resize_normalise(tf.constant(jpegs[0]), "A-window", pp.TORCH)
    assert one.shape == (224, 224, 3)
    np.testing.assert_array_equal(one.numpy(), _per_image(jpegs[0], "A-window", pp.TORCH, True))
    empty = rn.decode_crop_resize_normalise(tf.constant([], tf.string), "A-window", pp.TORCH)
    assert empty.shape == (0, 224, 224, 3)


def test_in_a_tf_function_the_shape_is_known(jpegs):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def decode(batch):
        out = rn.decode_crop_resize_normalise(batch, "B", pp.CAFFE)
        assert out.shape.as_list() == [None, 224, 224, 3]
        return out

    assert decode(tf.constant(jpegs[:3])).shape == (3, 224, 224, 3)


def test_bad_images_are_named_by_their_place_in_the_batch(jpegs):
    good = jpegs[0]
    truncated = good[: len(good) // 2]
    tiny = _jpeg(np.zeros((1, 1, 3), np.uint8))
    png = io.BytesIO()
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
    cases = [(b"not a jpeg", r"image 1 of 2 \(10 bytes\) is not a readable JPEG"),
             (png.getvalue(), r"image 1 of 2 \(\d+ bytes\) is not a readable JPEG"),
             (truncated, r"image 1 of 2 \(\d+x\d+, \d+ bytes\): invalid or truncated JPEG data"),
             (tiny, r"image 1 of 2 is 1x1 pixels, too small for a central_square crop of 224/256")]
    for bad, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            rn.decode_crop_resize_normalise(tf.constant([good, bad]), "A-window", pp.TORCH)
    # a header claiming 60000x60000 pixels is refused from the header, before any decoding
    huge = bytearray(_jpeg(np.zeros((16, 16, 3), np.uint8)))
    sof = huge.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    huge[sof + 5:sof + 9] = (60000).to_bytes(2, "big") * 2
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image 1 of 2 is 60000x60000 pixels, more than"):
        rn.decode_crop_resize_normalise(tf.constant([good, bytes(huge)]), "A-window", pp.TORCH)
    # two bad images decoded on different threads: the first in batch order is reported
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"image 1 of 4 \(3 bytes\)"):
        rn.decode_crop_resize_normalise(tf.constant([good, b"bad", good, b"worse"]), "A-window", pp.TORCH)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"the image \(10 bytes\) is not a readable JPEG"):
        rn.decode_crop_resize_normalise(tf.constant(b"not a jpeg"), "A-window", pp.TORCH)


def test_a_resize_first_recipe_is_refused():
    with pytest.raises(UserError, match="'A-aspect' resizes before it crops"):
        rn.decode_crop_resize_normalise(tf.constant([b""]), "A-aspect", pp.TORCH)
