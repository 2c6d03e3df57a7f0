"""Loaders: channel order, dirty inputs (grayscale, RGBA, palette, 16-bit, CMYK, EXIF), errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from tfbench.data import images
from tfbench.plumbing.errors import UserError

LIBS = images.LIBRARIES


@pytest.fixture(scope="module")
def photo_jpeg(tmp_path_factory):
    """scikit-image's chelsea saved as a JPEG (made here, not shipped)."""
    path = tmp_path_factory.mktemp("img") / "chelsea.jpg"
    return images.save_jpeg(images.skimage_photo("chelsea"), path)


@pytest.fixture(scope="module")
def red_left_jpeg(tmp_path_factory):
    """A JPEG whose left half is pure red and right half pure blue."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:, :32, 0] = 255
    pixels[:, 32:, 2] = 255
    path = tmp_path_factory.mktemp("img") / "red_blue.jpg"
    return images.save_jpeg(pixels, path, quality=95)


def test_channel_orders_of_the_three_libraries(red_left_jpeg):
    orders = {lib: images.load_image(red_left_jpeg, lib).channel_order for lib in LIBS}
    assert orders == {"pil": "RGB", "cv2": "BGR", "skimage": "RGB"}
    for lib in LIBS:
        image = images.load_image(red_left_jpeg, lib)
        red_channel = image.channel_order.index("R")
        assert image.pixels.dtype == np.uint8 and image.pixels.shape == (64, 64, 3)
        assert image.pixels[32, 8, red_channel] > 240, lib          # left half is red in the R slot
        assert image.pixels[32, 8, 2 - red_channel] < 15, lib       # and not in the B slot
        assert image.rgb()[32, 56, 2] > 240 and image.rgb()[32, 56, 0] < 15, lib


def test_loaders_agree_once_the_order_is_taken_into_account(photo_jpeg):
    pil, cv, sk = (images.load_image(photo_jpeg, lib) for lib in LIBS)
    raw = np.abs(pil.pixels.astype(int) - cv.pixels.astype(int)).mean()
    assert raw > 10  # the raw arrays really are in different orders
    # Same libjpeg-turbo underneath PIL and OpenCV here; the bound allows a different build's rounding.
    assert np.abs(pil.rgb().astype(int) - cv.rgb().astype(int)).max() <= 2
    np.testing.assert_array_equal(pil.rgb(), sk.rgb())  # imageio decodes with PIL
    np.testing.assert_array_equal(cv.bgr(), cv.pixels)


def test_grayscale_rgba_palette_become_rgb_uint8(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    PILImage.fromarray(gray).save(tmp_path / "gray.png")
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    palette_img = PILImage.fromarray(rgba[..., :3]).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=16)
    palette_img.save(tmp_path / "palette.png")
    palette_rgb = np.asarray(palette_img.convert("RGB"))
    for lib in LIBS:
        g = images.load_image(tmp_path / "gray.png", lib)
        np.testing.assert_array_equal(g.rgb(), np.repeat(gray[..., None], 3, axis=2))
        a = images.load_image(tmp_path / "rgba.png", lib)
        np.testing.assert_array_equal(a.rgb(), rgba[..., :3])  # alpha dropped, colours kept
        p = images.load_image(tmp_path / "palette.png", lib)
        np.testing.assert_array_equal(p.rgb(), palette_rgb)
    assert any("grayscale" in n for n in images.load_image(tmp_path / "gray.png", "pil").notes)
    assert any("alpha" in n for n in images.load_image(tmp_path / "rgba.png", "skimage").notes)


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    rng = np.random.default_rng(1)
    deep = rng.integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    import cv2

    assert cv2.imwrite(str(tmp_path / "deep.png"), deep[..., ::-1])  # OpenCV writes 16-bit RGB PNGs
    expected = (deep >> 8).astype(np.uint8)
    for lib in LIBS:
        got = images.load_image(tmp_path / "deep.png", lib).rgb().astype(int)
        # OpenCV rounds (v / 257), the others shift (v >> 8): at most one level apart.
        assert np.abs(got - expected).max() <= 1, lib
    gray16 = rng.integers(0, 65536, (8, 8), dtype=np.uint16)
    PILImage.fromarray(gray16).save(tmp_path / "gray16.png")
    image = images.load_image(tmp_path / "gray16.png", "pil")
    np.testing.assert_array_equal(image.rgb()[..., 1], (gray16 >> 8).astype(np.uint8))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    rgb = images.skimage_photo("coffee")[::4, ::4]
    PILImage.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    loaded = {lib: images.load_image(tmp_path / "cmyk.jpg", lib).rgb().astype(int) for lib in LIBS}
    for lib, pixels in loaded.items():
        assert pixels.shape == rgb.shape
        assert np.abs(pixels - rgb).mean() < 6, lib  # back near the original colours (JPEG loss only)


def test_exif_orientation(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255  # white band on the left
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    PILImage.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    pil = images.load_image(tmp_path / "rotated.jpg", "pil")
    cv = images.load_image(tmp_path / "rotated.jpg", "cv2")
    sk = images.load_image(tmp_path / "rotated.jpg", "skimage")
    assert pil.pixels.shape[:2] == (40, 20) and cv.pixels.shape[:2] == (40, 20)
    assert pil.rgb()[2, 10].min() > 200 and pil.rgb()[-2, 10].max() < 50  # band now at the top
    assert np.abs(pil.rgb().astype(int) - cv.rgb().astype(int)).max() <= 2
    assert sk.pixels.shape[:2] == (20, 40)  # scikit-image leaves it as stored ...
    assert any("NOT applied" in n for n in sk.notes)  # ... and the Image says so


@pytest.mark.parametrize("lib", LIBS)
def test_unreadable_files_name_the_file(tmp_path, lib):
    corrupt = tmp_path / "corrupt.JPEG"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
    empty = tmp_path / "empty.JPEG"
    empty.write_bytes(b"")
    for path in (corrupt, empty, tmp_path / "missing.JPEG"):
        with pytest.raises(UserError, match=path.name):
            images.load_image(path, lib)


def test_from_array_needs_an_order_and_integer_pixels():
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    image = images.from_array(pixels, "BGR")
    np.testing.assert_array_equal(image.rgb(), pixels[..., ::-1])
    with pytest.raises(TypeError):
        images.from_array(pixels)  # type: ignore[call-arg]  # no default order, on purpose
    with pytest.raises(UserError, match="RGB"):
        images.from_array(pixels, "rgb")
    with pytest.raises(UserError, match="float"):
        images.from_array(pixels / 255.0, "RGB")
    with pytest.raises(ValueError):
        image.pixels[0, 0, 0] = 1  # read-only: an Image cannot change under its order label
    with pytest.raises(UserError, match="library"):
        images.load_image("x.jpg", "matplotlib")
