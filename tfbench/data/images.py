"""Image loaders that return pixels together with their channel order (course exercise 4.5).

Which channel order do OpenCV, scikit-image and PIL give?  OpenCV decodes to **BGR**, PIL and
scikit-image to **RGB**; all three give ``uint8`` for an 8-bit JPEG, but they disagree on
everything else (grayscale, alpha, palettes, 16-bit files, EXIF orientation).  Rather than
make every caller remember, each loader here returns an :class:`Image`: the ``uint8``
``HxWx3`` pixels *and* the order they are in.  ``tfbench.data.preprocess.normalise`` reads that
order, so a BGR array can never be fed to an RGB network by accident.

What each loader does with unusual files (every result is 3-channel ``uint8``; the
conversions done are listed in :attr:`Image.notes`):

========================  ==========================  ==========================  ==========================
input                     ``pil``                     ``cv2``                     ``skimage``
========================  ==========================  ==========================  ==========================
channel order             RGB                         BGR                         RGB
grayscale                 copied to 3 channels        copied to 3 channels        copied to 3 channels
RGBA / LA                 alpha dropped               alpha dropped               alpha dropped
palette (P)               expanded to RGB             expanded (by OpenCV)        expanded (by imageio)
16-bit                    scaled to 8 bit (>> 8)      scaled to 8 bit (>> 8)      scaled to 8 bit (>> 8)
CMYK JPEG                 converted to RGB            converted by OpenCV         4 CMYK channels (!), we
                                                                                  convert as PIL does
EXIF orientation          applied                     applied (``IMREAD_COLOR``)  not applied (noted)
========================  ==========================  ==========================  ==========================

Run ``python -m tfbench.images [FILE ...]`` to see the three loaders side by side (default:
scikit-image's ``chelsea`` photo saved as a JPEG).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from tfbench.plumbing.errors import UserError

ORDERS = ("RGB", "BGR")
LIBRARIES = ("pil", "cv2", "skimage")

#: The most pixels (width x height) an image may have: a larger one is refused from its header, before
#: any decoding (a "decompression bomb": a small file that would decode to gigabytes).  PIL's own
#: limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``), about 537 MB as RGB; every loader here and the
#: TFRecord converter use this one number.
MAX_IMAGE_PIXELS = 178_956_970


class TooLarge(ValueError):
    """An image with more than :data:`MAX_IMAGE_PIXELS` pixels."""


@contextlib.contextmanager
def open_pil(data: bytes, source: str | Path) -> Iterator[Any]:
    """``PIL.Image.open`` of ``data``, refused with :class:`TooLarge` (before decoding) above :data:`MAX_IMAGE_PIXELS`.

    PIL's own check is set aside while the header is read, so that this limit alone applies.
    """
    from PIL import Image as PILImage

    saved = PILImage.MAX_IMAGE_PIXELS
    PILImage.MAX_IMAGE_PIXELS = None
    try:
        img = PILImage.open(io.BytesIO(data))
    finally:
        PILImage.MAX_IMAGE_PIXELS = saved
    with img:
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            raise TooLarge(f"{width}x{height} pixels ({width * height:,}), more than the limit of "
                           f"{MAX_IMAGE_PIXELS:,} (tfbench.data.images.MAX_IMAGE_PIXELS): refused before decoding")
        yield img


def check_size(data: bytes, source: str | Path) -> None:
    """Refuse an image whose header says it has more than :data:`MAX_IMAGE_PIXELS` (formats PIL can read)."""
    try:
        with open_pil(data, source):
            pass
    except TooLarge as err:
        raise UserError(f"{source}: {err}") from None
    except Exception:  # noqa: BLE001 - a format PIL cannot read: the decoder that reads it says so
        pass


@dataclass(frozen=True)
class Image:
    """Pixels (``uint8``, ``HxWx3``, read-only) and the channel order they are in, plus where they came from."""

    pixels: np.ndarray
    channel_order: str  # "RGB" or "BGR"
    source: str = "<array>"  # file name, or "<array>"
    library: str = "array"  # "pil", "cv2", "skimage" or "array"
    notes: tuple[str, ...] = field(default=())  # conversions applied on the way to HxWx3 uint8

    def __post_init__(self) -> None:
        if self.channel_order not in ORDERS:
            raise UserError(f"{self.source}: channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3:
            shape = getattr(p, "shape", None)
            dtype = getattr(p, "dtype", type(p).__name__)
            raise UserError(f"{self.source}: expected uint8 pixels of shape (H, W, 3), got {dtype} {shape}")
        if p.flags.writeable:
            p = p.copy()
            p.flags.writeable = False
            object.__setattr__(self, "pixels", p)

    @property
    def height(self) -> int:
        """Rows."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Columns."""
        return int(self.pixels.shape[1])

    def to(self, channel_order: str) -> np.ndarray:
        """The pixels in ``channel_order`` (a reversed view if the order differs; RGB<->BGR is a flip)."""
        if channel_order not in ORDERS:
            raise UserError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        return self.pixels if channel_order == self.channel_order else self.pixels[..., ::-1]

    def rgb(self) -> np.ndarray:
        """The pixels in RGB order."""
        return self.to("RGB")

    def bgr(self) -> np.ndarray:
        """The pixels in BGR order."""
        return self.to("BGR")

    def replace(self, pixels: np.ndarray, note: str | None = None) -> "Image":
        """A new Image with other pixels in the same order (e.g. after a crop), optionally noting why."""
        notes = self.notes + ((note,) if note else ())
        return Image(np.ascontiguousarray(pixels), self.channel_order, self.source, self.library, notes)


def from_array(array: np.ndarray, channel_order: str, *, source: str = "<array>") -> Image:
    """Wrap an array you already have; you must say its channel order (there is no default on purpose).

    Accepts ``HxW`` (grayscale, copied to 3 channels), ``HxWx1``, ``HxWx3`` or ``HxWx4`` (alpha dropped),
    as ``uint8`` or ``uint16`` (scaled to 8 bit); floats are refused (their range is ambiguous).
    """
    pixels, notes = _to_uint8_rgb3(np.asarray(array), source)
    return Image(pixels, channel_order, source, "array", notes)


def _to_uint8_rgb3(array: np.ndarray, source: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Make any supported array ``HxWx3 uint8``; return it with the list of conversions done."""
    notes: list[str] = []
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
        notes.append("16-bit scaled to 8-bit (>> 8)")
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
        notes.append("binary scaled to 0/255")
    elif array.dtype != np.uint8:
        raise UserError(f"{source}: expected uint8 or uint16 pixels, got {array.dtype} "
                        "(convert floats yourself: their range, 0..1 or 0..255, is ambiguous)")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise UserError(f"{source}: expected an image of shape (H, W), (H, W, 1|3|4), got {array.shape}")
    if array.shape[2] in (2, 4):
        array = array[:, :, :-1]
        notes.append("alpha dropped")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
        notes.append("grayscale copied to 3 channels")
    return np.ascontiguousarray(array), tuple(notes)


def _owned(pixels: np.ndarray) -> np.ndarray:
    """Mark a loader's freshly decoded array read-only in place, so :class:`Image` need not copy it."""
    pixels = np.ascontiguousarray(pixels)
    if pixels.base is not None and pixels.flags.writeable:  # a view of something else: copy to own it
        pixels = pixels.copy()
    pixels.flags.writeable = False
    return pixels


def _read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise UserError(f"{path}: no such image file") from err
    except IsADirectoryError as err:
        raise UserError(f"{path}: is a folder, expected an image file") from err
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror}") from err
    if not data:
        raise UserError(f"{path}: empty file (0 bytes), not an image")
    return data


def load_pil(path: str | Path) -> Image:
    """Decode with PIL: RGB; EXIF orientation applied; grayscale/alpha/palette/16-bit/CMYK made RGB uint8."""
    from PIL import ImageOps, UnidentifiedImageError

    data = _read_bytes(path)
    notes: list[str] = []
    try:
        with open_pil(data, path) as img:
            img.load()
            mode = img.mode
            orientation = _exif_orientation(img)
            if orientation not in (0, 1):
                img = ImageOps.exif_transpose(img)
                notes.append(f"EXIF orientation {orientation} applied")
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img).astype(np.uint32)
                array = np.clip(array, 0, 65535).astype(np.uint16)
                pixels, more = _to_uint8_rgb3(array, str(path))
                notes += more
            elif mode in ("RGB",):
                pixels = np.asarray(img)
            else:
                if mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                    notes.append("alpha dropped")
                if mode in ("L", "1", "LA"):
                    notes.append("grayscale copied to 3 channels")
                elif mode not in ("RGBA",):
                    notes.append(f"{mode} converted to RGB")
                pixels = np.asarray(img.convert("RGB"))
    except TooLarge as err:
        raise UserError(f"{path}: {err}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UserError(f"{path}: PIL cannot decode this image: {pil_message(err, path)}") from err
    return Image(_owned(pixels), "RGB", str(path), "pil", tuple(notes))


def pil_message(err: BaseException, path: str | Path) -> str:
    """PIL's error text with the file's name where PIL names only the in-memory buffer it was given."""
    return re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", os.path.basename(str(path)), str(err))


def _exif_orientation(img) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - broken EXIF blocks are common; orientation is then unknown
        return 1


def load_cv2(path: str | Path) -> Image:
    """Decode with OpenCV (``cv2.imdecode``, ``IMREAD_COLOR``): BGR uint8, EXIF orientation applied by OpenCV."""
    import cv2

    data = _read_bytes(path)
    check_size(data, path)
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        raise UserError(f"{path}: OpenCV cannot decode this image (corrupt or unsupported format)")
    return Image(_owned(pixels), "BGR", str(path), "cv2")  # OpenCV does not say what it converted


def load_skimage(path: str | Path) -> Image:
    """Decode with scikit-image (imageio underneath): RGB; no EXIF orientation; other conversions as in the table."""
    import skimage.io

    check_size(_read_bytes(path), path)  # the same clear errors for missing, empty or too large files
    try:
        array = skimage.io.imread(str(path))
    except Exception as err:  # noqa: BLE001 - imageio raises many types for undecodable files
        raise UserError(f"{path}: scikit-image cannot decode this image: {err}") from err
    if array.ndim == 4:  # animated GIF / multi-page: first frame
        array = array[0]
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as img:
            mode, orientation = img.mode, _exif_orientation(img)
    except Exception:  # noqa: BLE001 - only used for the notes and CMYK
        mode, orientation = "", 1
    cmyk_note: tuple[str, ...] = ()
    if mode == "CMYK" and array.ndim == 3 and array.shape[2] == 4:
        # imageio hands back the 4 CMYK channels as they are: not RGBA! Convert as PIL does.
        cmy = array[..., :3].astype(np.int16) + array[..., 3:].astype(np.int16)
        array = (255 - np.clip(cmy, 0, 255)).astype(np.uint8)
        cmyk_note = ("CMYK (imageio returns 4 CMYK channels) converted to RGB with PIL's formula",)
    pixels, notes = _to_uint8_rgb3(array, str(path))
    notes = cmyk_note + notes
    if orientation not in (0, 1):
        notes += (f"EXIF orientation {orientation} NOT applied (skimage.io.imread ignores it)",)
    return Image(_owned(pixels), "RGB", str(path), "skimage", notes)


LOADERS: dict[str, Callable[[str | Path], Image]] = {"pil": load_pil, "cv2": load_cv2, "skimage": load_skimage}


def load_image(path: str | Path, library: str = "pil") -> Image:
    """Load ``path`` with ``library`` (``"pil"``, ``"cv2"`` or ``"skimage"``) into an :class:`Image`."""
    if library not in LOADERS:
        raise UserError(f"unknown image library {library!r}; expected one of {', '.join(LOADERS)}")
    return LOADERS[library](path)


def skimage_photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photos (``chelsea``, ``coffee``, ``motorcycle_left``...) as uint8 (offline).

    Color photos come back RGB, grayscale ones (``camera``) as ``HxW``.
    """
    import skimage.data

    if name == "motorcycle_left":
        return np.asarray(skimage.data.stereo_motorcycle()[0])
    fn = getattr(skimage.data, name, None)
    if fn is None:
        raise UserError(f"scikit-image has no bundled image {name!r}")
    return np.asarray(fn())


def save_jpeg(pixels_rgb: np.ndarray, path: str | Path, quality: int = 90) -> Path:
    """Write RGB (or grayscale) uint8 pixels as a baseline JPEG with PIL (deterministic for one libjpeg)."""
    from PIL import Image as PILImage

    path = Path(path)
    PILImage.fromarray(np.asarray(pixels_rgb)).save(path, format="JPEG", quality=quality)
    return path
